//! LiveKit Inference: models served by LiveKit Cloud's gateway, authenticated with the
//! project's LiveKit API key and secret (no provider keys).
//!
//! [`Llm`], [`Stt`] and [`Tts`] speak the gateway's protocol (`docs/inference-protocol.md`).
//! The session builder and the agent builder also accept *model descriptors* in place of model
//! instances, resolved here:
//!
//! | kind | form | example |
//! |---|---|---|
//! | LLM | `provider/model` | `openai/gpt-4.1-mini` |
//! | STT | `provider/model[:language]` or `auto[:language]` | `deepgram/nova-3:multi` |
//! | TTS | `provider/model[:voice]` | `cartesia/sonic-3:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc` |
//!
//! ```no_run
//! use livekit_agents::voice::AgentSession;
//!
//! // Needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET (or LIVEKIT_INFERENCE_API_KEY/_SECRET).
//! let session = AgentSession::builder()
//!     .stt("deepgram/nova-3:multi")
//!     .llm("openai/gpt-4.1-mini")
//!     .tts("cartesia/sonic-3:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc")
//!     .try_build()
//!     .expect("valid descriptors and credentials");
//! ```

mod llm;
mod stt;
mod tts;

pub use llm::{Llm, LlmOptions};
pub use stt::{keyterms_key, Stt, SttFallbackModel, SttOptions};
pub use tts::{Tts, TtsFallbackModel, TtsOptions, POOL_MAX_AGE};

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::types::ApiError;

/// The production gateway.
pub const DEFAULT_INFERENCE_URL: &str = "https://agent-gateway.livekit.cloud/v1";
/// The staging gateway (used when `LIVEKIT_URL` points at a staging project).
pub const STAGING_INFERENCE_URL: &str = "https://agent-gateway.staging.livekit.cloud/v1";
/// Lifetime of the access tokens minted for each request (the reference's 600 s).
pub const TOKEN_TTL: Duration = Duration::from_secs(600);

/// LLM providers the gateway serves (reference 1.8.9).
pub const LLM_PROVIDERS: &[&str] = &[
    "openai",
    "google",
    "moonshotai",
    "deepseek-ai",
    "zai",
    "xai",
];
/// STT providers the gateway serves (reference 1.8.9); `auto` lets the gateway choose.
pub const STT_PROVIDERS: &[&str] = &[
    "deepgram",
    "assemblyai",
    "cartesia",
    "speechmatics",
    "openai",
    "xai",
    "inworld",
    "google",
];
/// TTS providers the gateway serves (reference 1.8.9).
pub const TTS_PROVIDERS: &[&str] = &[
    "cartesia",
    "deepgram",
    "rime",
    "inworld",
    "xai",
    "fishaudio",
];

/// Why an inference model could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// The descriptor string is malformed or names an unknown provider.
    #[error("invalid {kind} descriptor {descriptor:?}: {reason}; accepted forms: {forms}")]
    Descriptor {
        /// `LLM`, `STT` or `TTS`.
        kind: &'static str,
        /// What was given.
        descriptor: String,
        /// What is wrong.
        reason: String,
        /// The accepted forms, with examples.
        forms: &'static str,
    },
    /// The API key or secret is missing.
    #[error("LiveKit Inference needs an API {0}: pass it in the options or set LIVEKIT_API_{1} (or LIVEKIT_INFERENCE_API_{1})")]
    MissingCredentials(&'static str, &'static str),
    /// The base URL is invalid.
    #[error("invalid LiveKit Inference URL {url:?}")]
    InvalidUrl {
        /// The URL, or why it is invalid.
        url: String,
    },
}

const LLM_FORMS: &str = "\"provider/model\" (e.g. \"openai/gpt-4.1-mini\")";
const STT_FORMS: &str =
    "\"provider/model[:language]\" or \"auto[:language]\" (e.g. \"deepgram/nova-3:multi\")";
const TTS_FORMS: &str =
    "\"provider/model[:voice]\" (e.g. \"cartesia/sonic-3:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc\")";

/// A parsed descriptor: model and the part after the last `:` (language or voice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `provider/model` (or `auto` for STT).
    pub model: String,
    /// The suffix after the last `:`, when present.
    pub suffix: Option<String>,
}

impl Descriptor {
    /// The provider (the part before `/`).
    pub fn provider(&self) -> &str {
        self.model.split('/').next().unwrap_or_default()
    }

    fn parse(
        raw: &str,
        kind: &'static str,
        forms: &'static str,
        providers: &[&str],
        allow_suffix: bool,
        allow_auto: bool,
    ) -> Result<Self, InferenceError> {
        let err = |reason: String| InferenceError::Descriptor {
            kind,
            descriptor: raw.to_owned(),
            reason,
            forms,
        };
        if raw.is_empty() || raw.chars().any(char::is_whitespace) {
            return Err(err("it is empty or contains whitespace".into()));
        }
        let (model, suffix) = match raw.rfind(':') {
            Some(i) if allow_suffix => (&raw[..i], Some(&raw[i + 1..])),
            Some(_) => return Err(err("an LLM descriptor takes no `:` suffix".into())),
            None => (raw, None),
        };
        if suffix == Some("") {
            return Err(err("nothing after `:`".into()));
        }
        if allow_auto && model == "auto" {
            return Ok(Self {
                model: model.to_owned(),
                suffix: suffix.map(str::to_owned),
            });
        }
        let Some((provider, name)) = model.split_once('/') else {
            return Err(err("no provider (`provider/model`)".into()));
        };
        if provider.is_empty() || name.is_empty() {
            return Err(err("empty provider or model name".into()));
        }
        if !providers.contains(&provider) {
            return Err(err(format!(
                "unknown provider {provider:?} (known: {})",
                providers.join(", ")
            )));
        }
        Ok(Self {
            model: model.to_owned(),
            suffix: suffix.map(str::to_owned),
        })
    }

    /// Parses an LLM descriptor (`provider/model`).
    pub fn llm(raw: &str) -> Result<Self, InferenceError> {
        Self::parse(raw, "LLM", LLM_FORMS, LLM_PROVIDERS, false, false)
    }

    /// Parses an STT descriptor (`provider/model[:language]`, `auto[:language]`).
    pub fn stt(raw: &str) -> Result<Self, InferenceError> {
        Self::parse(raw, "STT", STT_FORMS, STT_PROVIDERS, true, true)
    }

    /// Parses a TTS descriptor (`provider/model[:voice]`).
    pub fn tts(raw: &str) -> Result<Self, InferenceError> {
        Self::parse(raw, "TTS", TTS_FORMS, TTS_PROVIDERS, true, false)
    }
}

/// Where and as whom to reach the gateway (shared by the three model kinds).
#[derive(Clone, Default)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct GatewayOptions {
    /// Gateway URL; default: `LIVEKIT_INFERENCE_URL`, else the staging gateway for staging
    /// projects (`LIVEKIT_URL` containing `.staging.livekit.cloud`), else
    /// [`DEFAULT_INFERENCE_URL`].
    pub base_url: Option<String>,
    /// API key; default: `LIVEKIT_INFERENCE_API_KEY`, else `LIVEKIT_API_KEY`.
    pub api_key: Option<String>,
    /// API secret; default: `LIVEKIT_INFERENCE_API_SECRET`, else `LIVEKIT_API_SECRET`.
    pub api_secret: Option<String>,
    /// Scheduling class sent as `X-LiveKit-Inference-Priority` (`priority`, `standard`, `low`).
    pub inference_class: Option<String>,
}

impl std::fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field(
                "api_secret",
                &crate::plugin_support::redacted(&self.api_secret),
            )
            .field("inference_class", &self.inference_class)
            .finish()
    }
}

/// Resolved gateway settings.
#[derive(Clone)]
pub(crate) struct Gateway {
    base_url: url::Url,
    api_key: String,
    api_secret: Arc<str>,
    inference_class: Option<String>,
    /// `X-LiveKit-Room-ID` / `X-LiveKit-Job-ID` of the job the model was created in (models
    /// created inside an entrypoint; a model shared by several jobs sends neither).
    job_headers: Vec<(HeaderName, String)>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Gateway {
    pub(crate) fn resolve(opts: &GatewayOptions) -> Result<Self, InferenceError> {
        let base = opts
            .base_url
            .clone()
            .or_else(|| env_nonempty("LIVEKIT_INFERENCE_URL"))
            .unwrap_or_else(|| {
                let lk = std::env::var("LIVEKIT_URL").unwrap_or_default();
                if lk.contains(".staging.livekit.cloud") {
                    STAGING_INFERENCE_URL.into()
                } else {
                    DEFAULT_INFERENCE_URL.into()
                }
            });
        let base_url = crate::plugin_support::parse_base_url(&base)
            .map_err(|_| InferenceError::InvalidUrl { url: base.clone() })?;
        let api_key = opts
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| env_nonempty("LIVEKIT_INFERENCE_API_KEY"))
            .or_else(|| env_nonempty("LIVEKIT_API_KEY"))
            .ok_or(InferenceError::MissingCredentials("key", "KEY"))?;
        let api_secret = opts
            .api_secret
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| env_nonempty("LIVEKIT_INFERENCE_API_SECRET"))
            .or_else(|| env_nonempty("LIVEKIT_API_SECRET"))
            .ok_or(InferenceError::MissingCredentials("secret", "SECRET"))?;
        #[allow(unused_mut)] // only filled with the agent server (feature `server`)
        let mut job_headers = Vec::new();
        #[cfg(feature = "server")]
        if let Some(job) = crate::worker::JobContext::current() {
            let job = job.job();
            if let Some(room) = job.room.as_ref().filter(|r| !r.sid.is_empty()) {
                job_headers.push((
                    HeaderName::from_static("x-livekit-room-id"),
                    room.sid.clone(),
                ));
            }
            if !job.id.is_empty() {
                job_headers.push((HeaderName::from_static("x-livekit-job-id"), job.id.clone()));
            }
        }
        Ok(Self {
            base_url,
            api_key,
            api_secret: api_secret.into(),
            inference_class: opts.inference_class.clone(),
            job_headers,
        })
    }

    /// A fresh access token with the inference grant: a LiveKit access token (an HS256 JWT
    /// signed with the API secret) for identity `agent`, valid [`TOKEN_TTL`]. Signed here
    /// rather than with `livekit-api` so that the light core (no `server` feature) needs only
    /// `hmac` and `sha2`; the tests verify it with LiveKit's own verifier.
    pub(crate) fn token(&self) -> Result<String, ApiError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use hmac::{Hmac, Mac};

        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| ApiError::other(format!("the system clock is before 1970: {e}")))?
            .as_secs();
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": self.api_key,
            "sub": "agent",
            "nbf": now,
            "exp": now.saturating_add(TOKEN_TTL.as_secs()),
            "inference": {"perform": true},
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.api_secret.as_bytes())
            .map_err(|_| ApiError::other("could not sign the LiveKit Inference token"))?;
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(format!("{signing_input}.{signature}"))
    }

    /// `{base}/{path}` over HTTP(S) or WS(S).
    pub(crate) fn endpoint(&self, path: &str, websocket: bool) -> url::Url {
        crate::plugin_support::endpoint(&self.base_url, path, websocket)
    }

    /// Opens the gateway WebSocket `{base}/{path}?model=…` (a fresh token and session id) and
    /// sends its `session.create` message. Returns the socket and the handshake's request id.
    /// Shared by the STT and TTS clients.
    pub(crate) async fn open_session(
        &self,
        provider: &crate::plugin_support::Provider,
        path: &str,
        model: &str,
        create: &serde_json::Value,
        timeout: Duration,
    ) -> Result<(crate::plugin_support::WsStream, Option<String>), ApiError> {
        let mut url = self.endpoint(path, true);
        url.query_pairs_mut().append_pair("model", model);
        let (mut ws, request_id) = provider
            .connect_ws(
                &crate::plugin_support::Dialer::Tcp,
                &url,
                self.headers()?,
                timeout,
            )
            .await?;
        provider.send_json(&mut ws, create).await?;
        Ok((ws, request_id))
    }

    /// Authentication and identification headers for one request or connection.
    pub(crate) fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token()?))
            .map_err(|_| ApiError::other("invalid LiveKit Inference token"))?;
        auth.set_sensitive(true);
        let mut headers = vec![
            (http::header::AUTHORIZATION, auth),
            (
                http::header::USER_AGENT,
                HeaderValue::from_static(concat!(
                    "LiveKit Agents/",
                    env!("CARGO_PKG_VERSION"),
                    " (rust)"
                )),
            ),
        ];
        let session_id = format!(
            "inference_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        if let Ok(v) = HeaderValue::from_str(&session_id) {
            headers.push((HeaderName::from_static("x-livekit-session-id"), v));
        }
        for (name, value) in &self.job_headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.push((name.clone(), v));
            }
        }
        if let Some(class) = &self.inference_class {
            if let Ok(v) = HeaderValue::from_str(class) {
                headers.push((HeaderName::from_static("x-livekit-inference-priority"), v));
            }
        }
        if let Some(token) = env_nonempty("LIVEKIT_WORKER_TOKEN") {
            if let Ok(mut v) = HeaderValue::from_str(&token) {
                v.set_sensitive(true);
                headers.push((HeaderName::from_static("x-livekit-worker-token"), v));
            }
        }
        Ok(headers)
    }
}

/// A model given to a builder: an instance, or a descriptor string resolved to LiveKit
/// Inference. `Arc<dyn Stt>`, `Arc<SomePlugin>`, `&str` and `String` convert into it.
pub enum ModelSpec<T: ?Sized> {
    /// A model instance.
    Instance(Arc<T>),
    /// A LiveKit Inference descriptor.
    Descriptor(String),
}

impl<T: ?Sized> std::fmt::Debug for ModelSpec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSpec::Instance(_) => f.write_str("Instance(..)"),
            ModelSpec::Descriptor(d) => f.debug_tuple("Descriptor").field(d).finish(),
        }
    }
}

macro_rules! model_spec_impls {
    ($tr:path, $inference:ty) => {
        impl From<Arc<dyn $tr>> for ModelSpec<dyn $tr> {
            fn from(model: Arc<dyn $tr>) -> Self {
                ModelSpec::Instance(model)
            }
        }
        impl<M: $tr> From<Arc<M>> for ModelSpec<dyn $tr> {
            fn from(model: Arc<M>) -> Self {
                ModelSpec::Instance(model)
            }
        }
        impl From<&str> for ModelSpec<dyn $tr> {
            fn from(descriptor: &str) -> Self {
                ModelSpec::Descriptor(descriptor.to_owned())
            }
        }
        impl From<String> for ModelSpec<dyn $tr> {
            fn from(descriptor: String) -> Self {
                ModelSpec::Descriptor(descriptor)
            }
        }
        impl ModelSpec<dyn $tr> {
            /// The instance, or the LiveKit Inference model the descriptor names (credentials
            /// from the environment).
            pub fn resolve(self) -> Result<Arc<dyn $tr>, InferenceError> {
                match self {
                    ModelSpec::Instance(model) => Ok(model),
                    ModelSpec::Descriptor(d) => {
                        Ok(Arc::new(<$inference>::from_descriptor(&d)?) as Arc<dyn $tr>)
                    }
                }
            }
        }
    };
}

model_spec_impls!(crate::stt::Stt, Stt);
model_spec_impls!(crate::llm::Llm, Llm);
model_spec_impls!(crate::tts::Tts, Tts);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_parse_and_errors_name_the_forms() {
        let d = Descriptor::stt("deepgram/nova-3:multi").unwrap();
        assert_eq!(d.model, "deepgram/nova-3");
        assert_eq!(d.suffix.as_deref(), Some("multi"));
        assert_eq!(d.provider(), "deepgram");
        assert_eq!(Descriptor::stt("auto:es").unwrap().model, "auto");
        assert_eq!(
            Descriptor::stt("assemblyai/universal-streaming")
                .unwrap()
                .suffix,
            None
        );
        let d = Descriptor::tts("cartesia/sonic-3:9626c31c-bec5").unwrap();
        assert_eq!(d.suffix.as_deref(), Some("9626c31c-bec5"));
        assert_eq!(
            Descriptor::llm("openai/gpt-4.1-mini").unwrap().model,
            "openai/gpt-4.1-mini"
        );

        for (bad, kind) in [
            ("gpt-4.1-mini", "LLM"),
            ("openai/gpt-4.1:x", "LLM"),
            ("nosuch/model", "LLM"),
            ("", "LLM"),
            ("openai/ gpt", "LLM"),
        ] {
            let e = Descriptor::llm(bad).unwrap_err().to_string();
            assert!(e.contains(kind) && e.contains("provider/model"), "{e}");
            assert!(!e.contains('\n'));
        }
        let e = Descriptor::stt("deepgram/nova-3:").unwrap_err().to_string();
        assert!(e.contains("auto[:language]"), "{e}");
        let e = Descriptor::tts("auto").unwrap_err().to_string();
        assert!(e.contains("provider/model[:voice]"), "{e}");
        let e = Descriptor::tts("elevenlabs2/x").unwrap_err().to_string();
        assert!(e.contains("unknown provider"), "{e}");
    }

    #[test]
    fn tokens_carry_the_inference_grant() {
        let gw = Gateway::resolve(&GatewayOptions {
            base_url: Some("http://127.0.0.1:1/v1".into()),
            api_key: Some("key".into()),
            api_secret: Some("a-secret-that-is-long-enough-for-hs256".into()),
            inference_class: Some("priority".into()),
        })
        .unwrap();
        let token = gw.token().unwrap();
        let claims = livekit_api::access_token::TokenVerifier::with_api_key(
            "key",
            "a-secret-that-is-long-enough-for-hs256",
        )
        .verify(&token)
        .unwrap();
        assert!(claims.inference.perform);
        assert_eq!(claims.sub, "agent");
        let headers = gw.headers().unwrap();
        assert!(headers
            .iter()
            .any(|(k, v)| k == "x-livekit-inference-priority" && v == "priority"));
        assert!(headers
            .iter()
            .all(|(_, v)| !v.to_str().unwrap_or("").contains("a-secret")));
        assert_eq!(gw.endpoint("stt", true).as_str(), "ws://127.0.0.1:1/v1/stt");
    }
}
