//! Deepgram speech-to-text and text-to-speech for `livekit-agents`.
//!
//! - [`Stt`]: streaming recognition over `wss://api.deepgram.com/v1/listen` (nova-3 by
//!   default) and one-shot recognition over `POST /v1/listen`.
//! - [`SttV2`]: Flux, the turn-taking model on `wss://api.deepgram.com/v2/listen`
//!   (`flux-general-en`); its end of turn ends the user's turn with `turn_detection = "stt"`.
//! - [`Tts`]: Aura-2 synthesis, streaming over `wss://api.deepgram.com/v1/speak` and one-shot
//!   over `POST /v1/speak`.
//!
//! Every client reads its API key from the options or `DEEPGRAM_API_KEY`, and its API root from
//! `with_base_url`, `DEEPGRAM_BASE_URL` or `https://api.deepgram.com`. Keys never appear in logs,
//! errors or `Debug` output.
//!
//! Streams survive dropped connections: the core re-runs the stream task, which reconnects and
//! resends only the audio Deepgram has not finalized, shifting the new connection's timestamps
//! so they continue where the old ones stopped.
//!
//! ```no_run
//! use livekit_agents::stt::Stt as _;
//! use livekit_agents::types::ApiConnectOptions;
//! use livekit_plugins_deepgram::{Stt, SttOptions};
//!
//! # async fn demo(frames: Vec<livekit_agents::audio::AudioFrame>) -> Result<(), Box<dyn std::error::Error>> {
//! let stt = Stt::new(SttOptions::default())?;
//! let mut stream = stt.stream(None, ApiConnectOptions::default())?;
//! for frame in frames {
//!     stream.push_frame(frame);
//! }
//! stream.end_input();
//! while let Some(event) = stream.next_event().await {
//!     let event = event?;
//!     println!("{:?}: {}", event.kind, event.text());
//! }
//! # Ok(()) }
//! ```

mod common;
mod flux;
mod listen;
mod stt;
mod tts;

/// The scripted server shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

pub use common::{ConfigError, API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL};
pub use flux::{FluxOptions, SttV2};
pub use stt::{Stt, SttOptions};
pub use tts::{Tts, TtsOptions};
