//! connection-fsm (work in progress).
