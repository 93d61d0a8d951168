//! Shared helpers for the example agents (nothing yet).
