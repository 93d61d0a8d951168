//! Deepgram speech-to-text and text-to-speech for `livekit-agents`.
//!
//! - [`Stt`]: streaming recognition over `wss://api.deepgram.com/v1/listen` (nova-3 by
//!   default) and one-shot recognition over `POST /v1/listen`.
//!
//! Every client reads its API key from the options or `DEEPGRAM_API_KEY`, and its API root from
//! `with_base_url`, `DEEPGRAM_BASE_URL` or `https://api.deepgram.com`. Keys never appear in logs,
//! errors or `Debug` output.

mod common;
mod stt;

pub use common::{ConfigError, API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL};
pub use stt::{Stt, SttOptions};
