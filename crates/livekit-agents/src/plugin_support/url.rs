//! API roots and endpoint URLs.

use url::Url;

/// A base URL that does not parse or has a scheme other than `http(s)`/`ws(s)`.
///
/// Plugins convert it into their own configuration error (whose message names the provider).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base URL {url:?}: {reason}")]
#[non_exhaustive]
pub struct InvalidBaseUrl {
    /// The URL as given.
    pub url: String,
    /// Why it was rejected.
    pub reason: String,
}

/// The API root from `explicit`, else the environment variable `env` (when given, set and not
/// blank), else `default`, parsed with [`parse_base_url`].
pub fn resolve_base_url(
    explicit: Option<&str>,
    env: Option<&str>,
    default: &str,
) -> Result<Url, InvalidBaseUrl> {
    let raw = match explicit {
        Some(u) => u.to_string(),
        None => env
            .and_then(|e| std::env::var(e).ok())
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| default.to_string()),
    };
    parse_base_url(&raw)
}

/// Parses a base URL and checks its scheme (`http`, `https`, `ws` or `wss`).
pub fn parse_base_url(raw: &str) -> Result<Url, InvalidBaseUrl> {
    let invalid = |reason: String| InvalidBaseUrl {
        url: raw.to_string(),
        reason,
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" | "ws" | "wss" => Ok(url),
        other => Err(invalid(format!("unsupported scheme {other:?}"))),
    }
}

/// `base` with `path` appended to its path, keeping a prefix such as `/v1` (`base`'s query is
/// kept too).
pub fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url
}

/// Switches `url` to the WebSocket scheme (`websocket = true`: `ws`/`wss`) or the HTTP one,
/// keeping TLS as it was.
pub fn switch_scheme(url: &mut Url, websocket: bool) {
    let scheme = match (url.scheme(), websocket) {
        ("https" | "wss", true) => "wss",
        ("http" | "ws", true) => "ws",
        ("https" | "wss", false) => "https",
        _ => "http",
    };
    // Switching between the special schemes http(s) and ws(s) is always allowed.
    let _ = url.set_scheme(scheme);
}

/// The endpoint `path` (e.g. `/v1/listen`) on `base`, without `base`'s query, as a WebSocket
/// (`websocket = true`) or HTTP URL.
pub fn endpoint(base: &Url, path: &str, websocket: bool) -> Url {
    let mut url = join_path(base, path);
    url.set_query(None);
    switch_scheme(&mut url, websocket);
    url
}

/// Query parameters, sent in the order they were pushed (a key pushed twice is sent twice,
/// the usual way of passing lists).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Adds `key=value` (`value` formatted with `ToString`: booleans are `true`/`false`).
    pub fn push(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.0.push((key.to_string(), value.to_string()));
        self
    }

    /// Appends the parameters to `url`'s query.
    pub fn apply(&self, url: &mut Url) {
        if self.0.is_empty() {
            return;
        }
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &self.0 {
            pairs.append_pair(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_switches_scheme_and_keeps_prefix() {
        let base = parse_base_url("https://api.example.com").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/listen", true).as_str(),
            "wss://api.example.com/v1/listen"
        );
        let base = parse_base_url("http://127.0.0.1:9/proxy/?x=1").unwrap();
        assert_eq!(
            endpoint(&base, "/v1/speak", true).as_str(),
            "ws://127.0.0.1:9/proxy/v1/speak"
        );
        assert_eq!(
            endpoint(&base, "v1/speak", false).as_str(),
            "http://127.0.0.1:9/proxy/v1/speak"
        );
        assert_eq!(
            join_path(&base, "/v1/speak").as_str(),
            "http://127.0.0.1:9/proxy/v1/speak?x=1"
        );
        let mut url = parse_base_url("wss://h/p").unwrap();
        switch_scheme(&mut url, false);
        assert_eq!(url.as_str(), "https://h/p");
    }

    #[test]
    fn base_urls_are_checked_and_resolved_in_order() {
        let err = parse_base_url("ftp://x").unwrap_err();
        assert_eq!(err.url, "ftp://x");
        assert!(err.reason.contains("unsupported scheme"));
        assert!(parse_base_url("not a url").is_err());
        let unset = Some("PLUGIN_SUPPORT_TEST_UNSET_URL");
        assert_eq!(
            resolve_base_url(Some("http://a"), unset, "http://b")
                .unwrap()
                .as_str(),
            "http://a/"
        );
        assert_eq!(
            resolve_base_url(None, unset, "http://b").unwrap().as_str(),
            "http://b/"
        );
        assert!(resolve_base_url(Some(""), unset, "http://b").is_err());
    }

    #[test]
    fn query_params_keep_order_and_repeat_keys() {
        let mut url = Url::parse("ws://h/listen").unwrap();
        let mut q = QueryParams::default();
        q.push("keyterm", "a b")
            .push("keyterm", "c")
            .push("punctuate", false);
        q.apply(&mut url);
        assert_eq!(
            url.as_str(),
            "ws://h/listen?keyterm=a+b&keyterm=c&punctuate=false"
        );
        let mut bare = Url::parse("ws://h/listen").unwrap();
        QueryParams::default().apply(&mut bare);
        assert_eq!(bare.as_str(), "ws://h/listen");
    }
}
