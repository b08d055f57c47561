//! rarakoon-client (work in progress).
