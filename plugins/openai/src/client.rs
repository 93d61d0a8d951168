//! What every OpenAI client shares: the API key (never printed), configuration errors, the base
//! URL and how endpoints are joined onto it, authentication headers (Bearer, or Azure's
//! `api-key`), and the mapping of HTTP failures to [`ApiError`]s.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use livekit_agents::plugin_support::{self, switch_scheme, InvalidBaseUrl};
use livekit_agents::types::ApiError;
use url::Url;

pub(crate) use livekit_agents::plugin_support::{join_path, redacted, truncate, ApiKey};

/// Environment variable holding the OpenAI API key.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";
/// Environment variable overriding the OpenAI API base URL (a proxy, a gateway, a local server).
pub const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// The public OpenAI API root.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A client could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No API key was given and the environment variable is unset or empty.
    #[error("missing API key: set {env} or pass `api_key` in the options")]
    MissingApiKey {
        /// The environment variable that was read.
        env: &'static str,
    },
    /// A required setting (e.g. the Azure endpoint) is missing.
    #[error("missing {what}: set {env} or pass it explicitly")]
    MissingSetting {
        /// What is missing.
        what: &'static str,
        /// The environment variable that was read.
        env: &'static str,
    },
    /// The base URL does not parse or has an unsupported scheme.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An option value is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

impl From<InvalidBaseUrl> for ConfigError {
    fn from(e: InvalidBaseUrl) -> Self {
        ConfigError::InvalidBaseUrl {
            url: e.url,
            reason: e.reason,
        }
    }
}

/// The key from `explicit`, else from the environment variable `env`; a missing key names
/// `env`.
pub(crate) fn resolve_api_key(
    explicit: Option<&str>,
    env: &'static str,
) -> Result<ApiKey, ConfigError> {
    ApiKey::resolve(explicit, env).ok_or(ConfigError::MissingApiKey { env })
}

/// The `Authorization`/`api-key` header value for `key` (marked sensitive).
fn key_header(key: &ApiKey, prefix: &str) -> Result<HeaderValue, ApiError> {
    key.header_value(prefix, "API key")
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI and most compatible providers).
    Bearer(ApiKey),
    /// `api-key: <key>` (Azure OpenAI key authentication).
    AzureKey(ApiKey),
    /// No authentication header (e.g. a local Ollama server).
    None,
}

/// Where a client sends requests and how it authenticates: the resolved form of the options
/// every client takes (`api_key`, `base_url`).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) base_url: Url,
    pub(crate) auth: Auth,
    /// Query parameters added to every request (Azure's `api-version`).
    pub(crate) query: Vec<(String, String)>,
    /// Extra headers (e.g. OpenRouter's `HTTP-Referer`/`X-Title`).
    pub(crate) headers: Vec<(String, String)>,
    /// Name used in error messages, e.g. `OpenAI`, `Groq`.
    pub(crate) provider: String,
}

impl Endpoint {
    /// The OpenAI endpoint of a client's `api_key` and `base_url` options: the key from the
    /// option or [`API_KEY_ENV`], the root from the option, [`BASE_URL_ENV`] or
    /// [`DEFAULT_BASE_URL`], bearer authentication; `provider` names it in errors.
    pub(crate) fn openai(
        api_key: Option<&str>,
        base_url: Option<&str>,
        provider: &str,
    ) -> Result<Self, ConfigError> {
        let key = resolve_api_key(api_key, API_KEY_ENV)?;
        let base =
            plugin_support::resolve_base_url(base_url, Some(BASE_URL_ENV), DEFAULT_BASE_URL)?;
        Ok(Self::bearer(base, key, provider))
    }

    /// An endpoint with bearer authentication.
    pub(crate) fn bearer(base_url: Url, key: ApiKey, provider: &str) -> Self {
        Self {
            base_url,
            auth: Auth::Bearer(key),
            query: Vec::new(),
            headers: Vec::new(),
            provider: provider.to_string(),
        }
    }

    /// `path` (e.g. `/chat/completions`) joined onto the base URL, with the endpoint's query
    /// parameters, as an HTTP(S) or WebSocket URL.
    pub(crate) fn url(&self, path: &str, websocket: bool) -> Url {
        let mut url = join_path(&self.base_url, path);
        switch_scheme(&mut url, websocket);
        if !self.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// The authentication and extra headers.
    pub(crate) fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
        let mut out = Vec::new();
        match &self.auth {
            Auth::Bearer(key) => {
                out.push((http::header::AUTHORIZATION, key_header(key, "Bearer ")?))
            }
            Auth::AzureKey(key) => {
                out.push((HeaderName::from_static("api-key"), key_header(key, "")?))
            }
            Auth::None => {}
        }
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ApiError::other(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ApiError::other(format!("invalid value for header {name}")))?;
            out.push((name, value));
        }
        Ok(out)
    }

    /// A request builder for `POST path` with the endpoint's headers.
    pub(crate) fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, ApiError> {
        let mut builder = http.post(self.url(path, false));
        for (name, value) in self.headers()? {
            builder = builder.header(name, value);
        }
        Ok(builder)
    }
}

/// Parses and checks a base URL.
pub(crate) fn parse_base_url(raw: &str) -> Result<Url, ConfigError> {
    Ok(plugin_support::parse_base_url(raw)?)
}

/// A shared HTTP client (connection pool). Request timeouts are applied per request from
/// `ApiConnectOptions`.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The provider's request id header, when present.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-request-id", "apim-request-id", "request-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_string)
}

/// An error for an HTTP error status, with the provider's message and request id. 401 and 403
/// say the key was refused and are not retried; 408, 409, 429 and 5xx are retried.
pub(crate) fn status_error(
    provider: &str,
    status: u16,
    body: &str,
    request_id: Option<String>,
) -> ApiError {
    let detail = error_message(body);
    let message = match status {
        401 => format!("{provider} rejected the API key (HTTP 401 Unauthorized): {detail}"),
        403 => format!("{provider} refused access (HTTP 403 Forbidden): {detail}"),
        429 => format!("{provider} rate limit or quota exceeded (HTTP 429): {detail}"),
        _ => format!("{provider} request failed (HTTP {status}): {detail}"),
    };
    // A 429 for an exhausted quota (as opposed to a rate limit) will not clear by retrying.
    let quota_exhausted = status == 429 && body.contains("insufficient_quota");
    let retryable = (matches!(status, 408 | 409 | 429) || status >= 500) && !quota_exhausted;
    ApiError::Status {
        status,
        message,
        request_id,
        retryable,
    }
}

/// Reads an error response (bounded) and turns it into an [`ApiError`].
pub(crate) async fn error_from_response(provider: &str, response: reqwest::Response) -> ApiError {
    let status = response.status().as_u16();
    let request_id = request_id(response.headers());
    if status == 429 {
        let remaining = response
            .headers()
            .get("x-ratelimit-remaining-requests")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        tracing::warn!(provider, ?remaining, "rate limited (HTTP 429)");
    }
    let body = livekit_agents::plugin_support::read_body_prefix(
        response,
        livekit_agents::plugin_support::MAX_ERROR_BODY_BYTES,
        livekit_agents::plugin_support::ERROR_BODY_TIMEOUT,
    )
    .await;
    status_error(provider, status, &body, request_id)
}

/// The `error.message` of an OpenAI error body (`{"error": {"message": ...}}`), else the body
/// shortened.
pub(crate) fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let err = v.get("error").unwrap_or(&v);
        if let Some(s) = err.get("message").and_then(|s| s.as_str()) {
            return truncate(s, 300);
        }
        if let Some(s) = err.as_str() {
            return truncate(s, 300);
        }
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        "no details".to_string()
    } else {
        truncate(trimmed, 300)
    }
}

/// Maps a transport error of `reqwest` to an [`ApiError`] (never including URLs with secrets:
/// keys travel in headers, not URLs).
pub(crate) fn transport_error(provider: &str, e: &reqwest::Error, timeout: Duration) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout(timeout)
    } else {
        ApiError::connection(format!("{provider} connection failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_prefix_and_switch_scheme() {
        let base = parse_base_url("https://api.openai.com/v1").unwrap();
        let ep = Endpoint::bearer(base, ApiKey::new("k"), "OpenAI");
        assert_eq!(
            ep.url("/chat/completions", false).as_str(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            ep.url("realtime", true).as_str(),
            "wss://api.openai.com/v1/realtime"
        );
        let mut azure = Endpoint::bearer(
            parse_base_url("http://127.0.0.1:1/openai/deployments/d/").unwrap(),
            ApiKey::new("k"),
            "Azure OpenAI",
        );
        azure
            .query
            .push(("api-version".into(), "2024-10-01-preview".into()));
        assert_eq!(
            azure.url("/chat/completions", false).as_str(),
            "http://127.0.0.1:1/openai/deployments/d/chat/completions?api-version=2024-10-01-preview"
        );
        assert!(parse_base_url("ftp://x").is_err());
    }

    #[test]
    fn keys_are_redacted_and_missing_keys_name_the_variable() {
        let key = resolve_api_key(Some("sk-secret"), API_KEY_ENV).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        let ep = Endpoint::bearer(parse_base_url(DEFAULT_BASE_URL).unwrap(), key, "OpenAI");
        assert!(!format!("{ep:?}").contains("secret"));
        let headers = ep.headers().unwrap();
        assert!(headers[0].1.is_sensitive());
        let err = resolve_api_key(Some(" "), "GROQ_API_KEY").unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing API key: set GROQ_API_KEY or pass `api_key` in the options"
        );
    }

    #[test]
    fn openai_endpoints_resolve_key_and_root_from_the_options() {
        let ep =
            Endpoint::openai(Some(" sk-secret "), Some("http://127.0.0.1:1/v1"), "OpenAI").unwrap();
        assert_eq!(ep.base_url.as_str(), "http://127.0.0.1:1/v1");
        assert_eq!(ep.auth, Auth::Bearer(ApiKey::new("sk-secret")));
        assert_eq!(ep.provider, "OpenAI");
        assert!(!format!("{ep:?}").contains("secret"));
        assert_eq!(
            Endpoint::openai(Some(""), None, "OpenAI").unwrap_err(),
            ConfigError::MissingApiKey { env: API_KEY_ENV }
        );
        let err = Endpoint::openai(Some("k"), Some("ftp://x"), "OpenAI").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidBaseUrl { ref url, .. } if url == "ftp://x"));
        assert!(!format!("{err:?}").contains("secret"));
    }

    #[test]
    fn status_errors_follow_http_semantics() {
        let body =
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#;
        let e = status_error("OpenAI", 401, body, Some("req_1".into()));
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("rejected the API key"));
        assert!(e.to_string().contains("Incorrect API key provided"));
        assert!(e.to_string().contains("req_1"));
        assert!(!status_error("OpenAI", 403, "", None).is_retryable());
        assert!(status_error("OpenAI", 429, "", None).is_retryable());
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert!(!status_error("OpenAI", 429, quota, None).is_retryable());
        assert!(status_error("OpenAI", 503, "oops", None).is_retryable());
        assert!(!status_error("OpenAI", 400, "", None).is_retryable());
    }
}
