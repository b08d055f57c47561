//! tcp-messenger (work in progress).
