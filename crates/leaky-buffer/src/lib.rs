//! leaky-buffer (work in progress).
