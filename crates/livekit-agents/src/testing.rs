//! testing (in progress).
