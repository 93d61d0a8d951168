//! SIP participants: typed access to the `sip.*` attributes a phone caller's participant
//! carries, and the typed error of a failed SIP server call (busy, no answer, declined, ...).

use std::collections::HashMap;

use livekit_api::services::{ServerError, ServiceError};

/// Attribute names LiveKit SIP sets on a SIP participant.
pub mod attributes {
    /// The SIP call id (LiveKit's own, `SCL_...`).
    pub const CALL_ID: &str = "sip.callID";
    /// The full `Call-ID` header of the SIP call.
    pub const CALL_ID_FULL: &str = "sip.callIDFull";
    /// `active`, `automation`, `dialing`, `hangup` or `ringing`.
    pub const CALL_STATUS: &str = "sip.callStatus";
    /// The caller's (inbound) or callee's (outbound) number; absent with `HidePhoneNumber`.
    pub const PHONE_NUMBER: &str = "sip.phoneNumber";
    /// The dispatch rule that placed the call in the room.
    pub const RULE_ID: &str = "sip.ruleID";
    /// The trunk the call came through.
    pub const TRUNK_ID: &str = "sip.trunkID";
    /// The trunk's number (the number that was called, inbound).
    pub const TRUNK_PHONE_NUMBER: &str = "sip.trunkPhoneNumber";
    /// Twilio's account SID, on Twilio trunks.
    pub const TWILIO_ACCOUNT_SID: &str = "sip.twilio.accountSid";
    /// Twilio's call SID, on Twilio trunks.
    pub const TWILIO_CALL_SID: &str = "sip.twilio.callSid";
}

/// The `sip.callStatus` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SipCallStatus {
    /// The call is up.
    Active,
    /// The call is up and sending DTMF/automation before it is handed to the room.
    Automation,
    /// Outbound: dialing.
    Dialing,
    /// Outbound: ringing at the callee.
    Ringing,
    /// The call ended.
    Hangup,
    /// A value this version does not know.
    Other(String),
}

impl SipCallStatus {
    /// Parses the attribute value.
    pub fn parse(value: &str) -> Self {
        match value {
            "active" => SipCallStatus::Active,
            "automation" => SipCallStatus::Automation,
            "dialing" => SipCallStatus::Dialing,
            "ringing" => SipCallStatus::Ringing,
            "hangup" => SipCallStatus::Hangup,
            other => SipCallStatus::Other(other.to_owned()),
        }
    }

    /// Whether the call is answered and not yet over.
    pub fn is_connected(&self) -> bool {
        matches!(self, SipCallStatus::Active | SipCallStatus::Automation)
    }
}

/// What the `sip.*` attributes of a participant say about its phone call.
///
/// ```
/// use std::collections::HashMap;
/// use livekit_agents::telephony::{SipCallStatus, SipParticipantInfo};
///
/// let attrs: HashMap<String, String> = [
///     ("sip.callID", "SCL_abc"),
///     ("sip.callStatus", "active"),
///     ("sip.phoneNumber", "+15105550100"),
///     ("sip.trunkPhoneNumber", "+15105550199"),
/// ]
/// .into_iter()
/// .map(|(k, v)| (k.to_owned(), v.to_owned()))
/// .collect();
/// let info = SipParticipantInfo::from_attributes(&attrs).unwrap();
/// assert_eq!(info.phone_number.as_deref(), Some("+15105550100"));
/// assert_eq!(info.call_status, Some(SipCallStatus::Active));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SipParticipantInfo {
    /// `sip.callID`.
    pub call_id: Option<String>,
    /// `sip.callIDFull`.
    pub call_id_full: Option<String>,
    /// `sip.callStatus`.
    pub call_status: Option<SipCallStatus>,
    /// `sip.phoneNumber` (absent when the number is hidden).
    pub phone_number: Option<String>,
    /// `sip.ruleID`.
    pub rule_id: Option<String>,
    /// `sip.trunkID`.
    pub trunk_id: Option<String>,
    /// `sip.trunkPhoneNumber`.
    pub trunk_phone_number: Option<String>,
    /// `sip.twilio.accountSid`.
    pub twilio_account_sid: Option<String>,
    /// `sip.twilio.callSid`.
    pub twilio_call_sid: Option<String>,
    /// Every other attribute under `sip.` (custom `sip.h.*` headers and the like), by full name.
    pub other: HashMap<String, String>,
}

impl SipParticipantInfo {
    /// Reads the `sip.*` attributes; `None` when there are none (not a SIP participant).
    pub fn from_attributes(attrs: &HashMap<String, String>) -> Option<Self> {
        let mut info = SipParticipantInfo::default();
        let mut any = false;
        for (key, value) in attrs {
            if !key.starts_with("sip.") {
                continue;
            }
            any = true;
            let v = Some(value.clone()).filter(|v| !v.is_empty());
            match key.as_str() {
                attributes::CALL_ID => info.call_id = v,
                attributes::CALL_ID_FULL => info.call_id_full = v,
                attributes::CALL_STATUS => info.call_status = v.map(|s| SipCallStatus::parse(&s)),
                attributes::PHONE_NUMBER => info.phone_number = v,
                attributes::RULE_ID => info.rule_id = v,
                attributes::TRUNK_ID => info.trunk_id = v,
                attributes::TRUNK_PHONE_NUMBER => info.trunk_phone_number = v,
                attributes::TWILIO_ACCOUNT_SID => info.twilio_account_sid = v,
                attributes::TWILIO_CALL_SID => info.twilio_call_sid = v,
                _ => {
                    info.other.insert(key.clone(), value.clone());
                }
            }
        }
        any.then_some(info)
    }
}

/// Why a SIP call failed, from its SIP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipFailure {
    /// 486 Busy Here, 600 Busy Everywhere.
    Busy,
    /// 408 Request Timeout, 480 Temporarily Unavailable, 487 Request Terminated (ringing
    /// timed out): nobody answered.
    NoAnswer,
    /// 603 Decline, 607 Unwanted: the callee refused.
    Declined,
    /// 404 Not Found, 484 Address Incomplete, 604 Does Not Exist Anywhere: a wrong number.
    InvalidNumber,
    /// 401/403/407: the trunk refused the credentials or the destination.
    Forbidden,
    /// 5xx: the provider failed.
    ServerError,
    /// Any other status.
    Other,
}

impl SipFailure {
    /// The failure a SIP status code means.
    pub fn from_status_code(code: u16) -> Self {
        match code {
            486 | 600 => SipFailure::Busy,
            408 | 480 | 487 => SipFailure::NoAnswer,
            603 | 607 => SipFailure::Declined,
            404 | 484 | 604 => SipFailure::InvalidNumber,
            401 | 403 | 407 => SipFailure::Forbidden,
            500..=599 => SipFailure::ServerError,
            _ => SipFailure::Other,
        }
    }

    /// A sentence an agent can say or tell the model.
    pub fn describe(self) -> &'static str {
        match self {
            SipFailure::Busy => "the line is busy",
            SipFailure::NoAnswer => "nobody answered",
            SipFailure::Declined => "the call was declined",
            SipFailure::InvalidNumber => "the number could not be reached",
            SipFailure::Forbidden => "the call was not allowed",
            SipFailure::ServerError => "the phone provider failed",
            SipFailure::Other => "the call failed",
        }
    }
}

/// A SIP server call (`CreateSIPParticipant`, `TransferSIPParticipant`) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// The phone network answered with a SIP failure status (the Twirp error's
    /// `sip_status_code` / `sip_status` metadata).
    #[error("SipService.{call}: SIP {status_code} {status} ({})", failure.describe())]
    Call {
        /// The server call.
        call: &'static str,
        /// The SIP status code (e.g. 486).
        status_code: u16,
        /// The SIP reason phrase (e.g. "Busy Here").
        status: String,
        /// What the status means.
        failure: SipFailure,
        /// The Twirp error code (e.g. `resource_exhausted`).
        twirp_code: String,
    },
    /// The server refused or failed without a SIP status (bad request, permissions,
    /// network).
    #[error("SipService.{call}: {message}")]
    Server {
        /// The server call.
        call: &'static str,
        /// The Twirp error code, if the server answered with one.
        twirp_code: Option<String>,
        /// What went wrong (never contains the API secret).
        message: String,
    },
    /// The request was invalid before it was sent.
    #[error("invalid SIP request: {reason}")]
    InvalidRequest {
        /// What is invalid.
        reason: String,
    },
}

impl SipError {
    /// Maps a server API error of `call` (e.g. `"CreateSIPParticipant"`).
    pub fn from_service_error(call: &'static str, err: &ServiceError) -> Self {
        if let ServiceError::Twirp(ServerError::Twirp(code)) = err {
            let status_code = code
                .meta
                .get("sip_status_code")
                .and_then(|v| v.trim().parse::<u16>().ok());
            let status = code.meta.get("sip_status").cloned();
            if status_code.is_some() || status.is_some() {
                let status_code = status_code.unwrap_or(0);
                return SipError::Call {
                    call,
                    status_code,
                    status: status.unwrap_or_default(),
                    failure: SipFailure::from_status_code(status_code),
                    twirp_code: code.code.clone(),
                };
            }
            return SipError::Server {
                call,
                twirp_code: Some(code.code.clone()),
                message: code.to_string(),
            };
        }
        SipError::Server {
            call,
            twirp_code: None,
            message: err.to_string(),
        }
    }

    /// The SIP failure, when the phone network gave one.
    pub fn failure(&self) -> Option<SipFailure> {
        match self {
            SipError::Call { failure, .. } => Some(*failure),
            _ => None,
        }
    }

    /// The SIP status code, when the phone network gave one.
    pub fn sip_status_code(&self) -> Option<u16> {
        match self {
            SipError::Call { status_code, .. } => Some(*status_code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::services::ServerErrorCode;

    fn twirp(code: &str, meta: &[(&str, &str)]) -> ServiceError {
        ServiceError::Twirp(ServerError::Twirp(ServerErrorCode {
            code: code.into(),
            msg: "call failed".into(),
            meta: meta
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }))
    }

    #[test]
    fn sip_statuses_map_to_failures() {
        let err = SipError::from_service_error(
            "CreateSIPParticipant",
            &twirp(
                "resource_exhausted",
                &[("sip_status_code", "486"), ("sip_status", "Busy Here")],
            ),
        );
        assert_eq!(err.failure(), Some(SipFailure::Busy));
        assert_eq!(err.sip_status_code(), Some(486));
        assert_eq!(
            err.to_string(),
            "SipService.CreateSIPParticipant: SIP 486 Busy Here (the line is busy)"
        );
        for (code, failure) in [
            (480, SipFailure::NoAnswer),
            (408, SipFailure::NoAnswer),
            (603, SipFailure::Declined),
            (404, SipFailure::InvalidNumber),
            (403, SipFailure::Forbidden),
            (503, SipFailure::ServerError),
            (302, SipFailure::Other),
        ] {
            assert_eq!(SipFailure::from_status_code(code), failure, "{code}");
        }
    }

    #[test]
    fn errors_without_a_sip_status_stay_server_errors() {
        let err = SipError::from_service_error(
            "TransferSIPParticipant",
            &twirp("permission_denied", &[]),
        );
        assert_eq!(err.failure(), None);
        assert!(
            matches!(&err, SipError::Server { twirp_code: Some(c), .. } if c == "permission_denied")
        );
        // A garbled status code from the network is not trusted as a number.
        let err = SipError::from_service_error(
            "CreateSIPParticipant",
            &twirp("unknown", &[("sip_status_code", "99999999999")]),
        );
        assert_eq!(err.sip_status_code(), None);
        assert!(matches!(err, SipError::Server { .. }));
    }

    #[test]
    fn attributes_parse_into_sip_info() {
        let attrs: HashMap<String, String> = [
            ("sip.callID", "SCL_1"),
            ("sip.callIDFull", "abc@host"),
            ("sip.callStatus", "ringing"),
            ("sip.ruleID", "SDR_1"),
            ("sip.trunkID", "ST_1"),
            ("sip.trunkPhoneNumber", "+15550001"),
            ("sip.twilio.accountSid", "AC1"),
            ("sip.twilio.callSid", "CA1"),
            ("sip.h.x-customer", "42"),
            ("tier", "gold"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let info = SipParticipantInfo::from_attributes(&attrs).unwrap();
        assert_eq!(info.call_id.as_deref(), Some("SCL_1"));
        assert_eq!(info.call_id_full.as_deref(), Some("abc@host"));
        assert_eq!(info.call_status, Some(SipCallStatus::Ringing));
        assert!(!info.call_status.as_ref().unwrap().is_connected());
        assert_eq!(info.phone_number, None, "hidden number");
        assert_eq!(info.rule_id.as_deref(), Some("SDR_1"));
        assert_eq!(info.trunk_id.as_deref(), Some("ST_1"));
        assert_eq!(info.trunk_phone_number.as_deref(), Some("+15550001"));
        assert_eq!(info.twilio_account_sid.as_deref(), Some("AC1"));
        assert_eq!(info.twilio_call_sid.as_deref(), Some("CA1"));
        assert_eq!(info.other.len(), 1);
        assert_eq!(info.other["sip.h.x-customer"], "42");
        assert_eq!(
            SipCallStatus::parse("weird"),
            SipCallStatus::Other("weird".into())
        );
        assert!(SipParticipantInfo::from_attributes(&HashMap::new()).is_none());
    }
}
