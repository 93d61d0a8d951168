//! Cartesia text-to-speech and speech-to-text for `livekit-agents`.
//!
//! - [`Tts`]: streaming synthesis over `wss://api.cartesia.ai/tts/websocket` (sonic-3 by
//!   default, word timestamps turned into aligned transcripts) and one-shot synthesis over
//!   `POST /tts/bytes`.
//! - [`Stt`]: streaming recognition (ink-whisper) over `wss://api.cartesia.ai/stt/websocket`.
//!
//! Every client reads its API key from the options or `CARTESIA_API_KEY`, and its API root from
//! `with_base_url`, `CARTESIA_BASE_URL` or `https://api.cartesia.ai`. Requests carry the
//! `Cartesia-Version` header ([`API_VERSION`]). Keys never appear in logs, errors or `Debug`
//! output.

mod common;
mod stt;
mod tts;

/// The scripted server shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

pub use common::{ConfigError, API_KEY_ENV, API_VERSION, BASE_URL_ENV, DEFAULT_BASE_URL};
pub use stt::{Stt, SttOptions};
pub use tts::{Tts, TtsOptions, Voice, DEFAULT_VOICE_ID};
