//! API keys that never show up in `Debug` output, logs or errors.

use http::HeaderValue;

use crate::types::ApiError;

/// An API key (or token) whose `Debug` output is redacted.
///
/// Keys travel in headers marked sensitive ([`ApiKey::header_value`]), never in URLs, so HTTP
/// stacks do not log them and error messages built from URLs cannot leak them.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key from `explicit`, else from the environment variable `env`, trimmed; `None` when
    /// neither gives a non-blank value (the plugin turns that into its own "missing key" error,
    /// which names `env`).
    pub fn resolve(explicit: Option<&str>, env: &str) -> Option<Self> {
        let key = match explicit {
            Some(k) => Some(k.to_string()),
            None => std::env::var(env).ok(),
        };
        match key {
            Some(k) if !k.trim().is_empty() => Some(Self(k.trim().to_string())),
            _ => None,
        }
    }

    /// A key that is already known, used as given (e.g. a placeholder for a local server that
    /// ignores keys).
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// `prefix` followed by the key (e.g. `Bearer <key>`, `Token <key>`, or the bare key with
    /// an empty prefix) as a header value marked sensitive. `what` names the key in the error
    /// when it holds characters a header cannot carry (`the {what} contains invalid
    /// characters`; the key itself is never part of the error).
    pub fn header_value(&self, prefix: &str, what: &str) -> Result<HeaderValue, ApiError> {
        let mut value = HeaderValue::from_str(&format!("{prefix}{}", self.0))
            .map_err(|_| ApiError::other(format!("the {what} contains invalid characters")))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Formats an optional secret for a manual `Debug` impl of options without revealing it:
/// `Some(<redacted>)` or `None`.
pub fn redacted(secret: &Option<String>) -> &'static str {
    if secret.is_some() {
        "Some(<redacted>)"
    } else {
        "None"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_trimmed_redacted_and_sent_as_sensitive_headers() {
        let key = ApiKey::resolve(Some("  secret-123 "), "PLUGIN_SUPPORT_TEST_UNSET_KEY").unwrap();
        assert_eq!(key, ApiKey::new("secret-123"));
        assert!(!format!("{key:?}").contains("secret"));
        let value = key.header_value("Token ", "Acme API key").unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value, "Token secret-123");
        assert_eq!(redacted(&Some("secret-123".into())), "Some(<redacted>)");
        assert_eq!(redacted(&None), "None");
    }

    #[test]
    fn blank_or_absent_keys_are_missing() {
        assert!(ApiKey::resolve(Some("  "), "PLUGIN_SUPPORT_TEST_UNSET_KEY").is_none());
        assert!(ApiKey::resolve(None, "PLUGIN_SUPPORT_TEST_UNSET_KEY").is_none());
    }

    #[test]
    fn invalid_key_errors_do_not_contain_the_key() {
        let key = ApiKey::new("secret\nvalue");
        let err = key.header_value("Bearer ", "Acme API key").unwrap_err();
        assert_eq!(
            err.to_string(),
            ApiError::other("the Acme API key contains invalid characters").to_string()
        );
        assert!(!err.to_string().contains("secret"));
        assert!(!format!("{err:?}").contains("secret"));
    }
}
