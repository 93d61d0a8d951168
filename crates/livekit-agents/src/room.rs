//! room (in progress).
