//! wire-codec (work in progress).
