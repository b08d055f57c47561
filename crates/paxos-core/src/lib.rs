//! paxos-core (work in progress).
