//! The provider-neutral fake server comes from `livekit-plugin-test-support`; this module is
//! where Cartesia-specific test helpers would go.
#![allow(unused_imports)]

pub use livekit_plugin_test_support::*;
