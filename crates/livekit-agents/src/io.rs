//! io (in progress).
