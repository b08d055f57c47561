//! rarakoon-node (work in progress).
