//! tokenize/mod (in progress).
