//! download (in progress).
