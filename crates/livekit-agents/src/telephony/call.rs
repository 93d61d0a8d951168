//! Call control through the server API: hang up, cold transfer, outbound dialing, and reading a
//! SIP participant's info. [`CallControl`] adds these to [`JobContext`].

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use livekit_api::services::sip::{CreateSIPParticipantOptions, TransferSIPParticipantOptions};
use livekit_protocol as proto;

use super::sip::{SipError, SipParticipantInfo};
use crate::llm::RunContext;
use crate::voice::{AgentSession, CloseReason, SayOptions};
use crate::worker::JobContext;

/// Environment variable naming the default outbound SIP trunk (as the reference).
pub const OUTBOUND_TRUNK_ENV: &str = "LIVEKIT_SIP_OUTBOUND_TRUNK";

/// Longest phone number or SIP URI accepted (they come from dispatch metadata or the model).
const MAX_DESTINATION_LEN: usize = 256;

/// A telephony operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TelephonyError {
    /// A SIP call (dial, transfer) failed; see [`SipError::failure`].
    #[error(transparent)]
    Sip(#[from] SipError),
    /// A room service call failed.
    #[error("RoomService.{call}: {message}")]
    Room {
        /// The server call.
        call: &'static str,
        /// What went wrong (never contains the API secret).
        message: String,
    },
    /// The job runs without a LiveKit server (console mode), so there is no phone call to act on.
    #[error("no phone call in console mode: {0}")]
    Console(&'static str),
    /// The session cannot speak (not started, or closed).
    #[error(transparent)]
    Session(#[from] crate::voice::SessionError),
}

/// What hanging up does on the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HangupTarget {
    /// Delete the room: everyone, the SIP caller included, is disconnected (the reference's
    /// default).
    #[default]
    DeleteRoom,
    /// Remove only this participant (the SIP caller) and leave the room up.
    RemoveParticipant(String),
}

/// Options of [`CallControl::hang_up`].
#[derive(Debug, Clone)]
pub struct HangupOptions {
    /// Said (uninterruptible) before hanging up. From inside a tool the goodbye can only play
    /// once the speech running the tool is over, so the call then ends in the background
    /// after it played (see [`CallControl::hang_up_from_tool`]).
    pub goodbye: Option<String>,
    /// Let what the agent is saying finish first (default true): outside a tool, the speech
    /// playing now ([`CallControl::hang_up`]); inside one, what the agent said in the step
    /// that called the tool ([`CallControl::hang_up_from_tool`], through
    /// [`RunContext::wait_for_playout`]).
    pub wait_for_playout: bool,
    /// What to do on the server.
    pub target: HangupTarget,
    /// The job's shutdown reason (default `"call ended by the agent"`).
    pub reason: String,
}

impl Default for HangupOptions {
    fn default() -> Self {
        Self {
            goodbye: None,
            wait_for_playout: true,
            target: HangupTarget::DeleteRoom,
            reason: "call ended by the agent".into(),
        }
    }
}

/// Options of [`CallControl::transfer_call`] (the reference's cold transfer).
#[derive(Debug, Clone, Default)]
pub struct TransferOptions {
    /// Said (uninterruptible) before the transfer, e.g. "I'm transferring you now."
    pub announcement: Option<String>,
    /// Play a dial tone to the caller while the destination rings.
    pub play_dialtone: bool,
    /// How long the destination may ring (the server's default when `None`).
    pub ringing_timeout: Option<Duration>,
    /// SIP headers added to the REFER.
    pub headers: HashMap<String, String>,
}

/// An outbound call to place (the reference's `CreateSIPParticipantRequest` as agents use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundCall {
    /// The number (`+15105550100`) or SIP URI to call.
    pub phone_number: String,
    /// The outbound trunk (`ST_...`).
    pub sip_trunk_id: String,
    /// The callee's participant identity (default: the phone number).
    pub participant_identity: String,
    /// The callee's participant name.
    pub participant_name: Option<String>,
    /// Return only once the callee answered, with the SIP failure otherwise (default true).
    pub wait_until_answered: bool,
    /// How long to ring.
    pub ringing_timeout: Option<Duration>,
    /// Keys to send once answered (`w` = 0.5 s pause), e.g. an extension.
    pub dtmf: Option<String>,
    /// Play a dial tone in the room while ringing.
    pub play_dialtone: bool,
    /// SIP headers sent on the INVITE.
    pub headers: HashMap<String, String>,
}

/// Why dispatch metadata does not describe an outbound call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundCallError {
    /// The metadata is not a JSON object.
    #[error("dispatch metadata is not a JSON object: {reason}")]
    Metadata {
        /// Why the metadata cannot be used.
        reason: String,
    },
    /// No `phone_number`.
    #[error("dispatch metadata has no phone_number")]
    NoPhoneNumber,
    /// No trunk in the metadata, the argument or the environment.
    #[error("no outbound SIP trunk: set sip_trunk_id in the metadata or {OUTBOUND_TRUNK_ENV}")]
    NoTrunk,
    /// The number or URI is malformed.
    #[error("invalid phone number or SIP URI: {destination}")]
    InvalidDestination {
        /// The destination (shortened).
        destination: String,
    },
}

#[derive(serde::Deserialize)]
struct DispatchMetadata {
    phone_number: Option<String>,
    sip_trunk_id: Option<String>,
    participant_identity: Option<String>,
}

impl OutboundCall {
    /// A call to `phone_number` through `sip_trunk_id`, waiting until answered.
    pub fn new(phone_number: impl Into<String>, sip_trunk_id: impl Into<String>) -> Self {
        let phone_number = phone_number.into();
        Self {
            participant_identity: phone_number.clone(),
            phone_number,
            sip_trunk_id: sip_trunk_id.into(),
            participant_name: None,
            wait_until_answered: true,
            ringing_timeout: None,
            dtmf: None,
            play_dialtone: false,
            headers: HashMap::new(),
        }
    }

    /// The call the dispatch metadata asks for (`{"phone_number": "+1...", "sip_trunk_id":
    /// "ST_..."}`, the reference's convention); the trunk falls back to `default_trunk`, then
    /// to `LIVEKIT_SIP_OUTBOUND_TRUNK`.
    pub fn from_metadata(
        metadata: &str,
        default_trunk: Option<&str>,
    ) -> Result<Self, OutboundCallError> {
        let meta: DispatchMetadata =
            serde_json::from_str(metadata).map_err(|e| OutboundCallError::Metadata {
                reason: e.to_string(),
            })?;
        let phone = meta
            .phone_number
            .filter(|p| !p.trim().is_empty())
            .ok_or(OutboundCallError::NoPhoneNumber)?;
        let phone = validate_phone_destination(phone.trim())?;
        let trunk = meta
            .sip_trunk_id
            .filter(|t| !t.is_empty())
            .or_else(|| default_trunk.map(str::to_owned))
            .or_else(|| std::env::var(OUTBOUND_TRUNK_ENV).ok())
            .filter(|t| !t.is_empty())
            .ok_or(OutboundCallError::NoTrunk)?;
        let mut call = OutboundCall::new(phone, trunk);
        if let Some(identity) = meta.participant_identity.filter(|i| !i.is_empty()) {
            call.participant_identity = identity;
        }
        Ok(call)
    }
}

fn has_bad_chars(s: &str) -> bool {
    s.is_empty()
        || s.len() > MAX_DESTINATION_LEN
        || s.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Checks a number to dial: an E.164-like number (`+` and digits, separators allowed) or a
/// `sip:`/`sips:`/`tel:` URI.
pub fn validate_phone_destination(dest: &str) -> Result<String, OutboundCallError> {
    let bad = || OutboundCallError::InvalidDestination {
        destination: truncate_for_error(dest),
    };
    let lower = dest.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:") {
        return if has_bad_chars(dest) || dest.len() <= 4 {
            Err(bad())
        } else {
            Ok(dest.to_owned())
        };
    }
    let compact: String = dest
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    if digits.is_empty() || digits.len() > 20 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(compact)
}

/// The `transfer_to` of a cold transfer: a `tel:` or `sip:` URI; a bare number becomes
/// `tel:<number>`.
///
/// ```
/// use livekit_agents::telephony::transfer_destination;
/// assert_eq!(transfer_destination("+1 510 555 0100").unwrap(), "tel:+15105550100");
/// assert_eq!(transfer_destination("sip:support@example.com").unwrap(), "sip:support@example.com");
/// assert!(transfer_destination("call mom").is_err());
/// ```
pub fn transfer_destination(dest: &str) -> Result<String, OutboundCallError> {
    let dest = dest.trim();
    let validated = validate_phone_destination(dest)?;
    let lower = validated.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:") {
        Ok(validated)
    } else {
        Ok(format!("tel:{validated}"))
    }
}

fn truncate_for_error(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn room_error(call: &'static str, e: &livekit_api::services::ServiceError) -> TelephonyError {
    TelephonyError::Room {
        call,
        message: e.to_string(),
    }
}

/// Says `text` without interruptions; `None` when the session cannot speak.
fn say_uninterruptible(session: &AgentSession, text: &str) -> Option<crate::voice::SpeechHandle> {
    match session.say(
        text.to_owned(),
        SayOptions {
            allow_interruptions: Some(false),
            ..Default::default()
        },
    ) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::debug!(error = %e, "cannot say the call-control announcement");
            None
        }
    }
}

/// Says `text` without interruptions and waits until it played.
async fn say_and_wait(session: &AgentSession, text: &str) {
    if let Some(handle) = say_uninterruptible(session, text) {
        handle.wait_for_playout().await;
    }
}

/// Closes `session` because its phone call ended ([`CloseReason::CallEnded`]); with `drain`,
/// queued speech finishes first.
pub(crate) async fn close_for_call_end(session: &AgentSession, drain: bool) {
    if drain {
        if let Some(activity) = session.current_activity() {
            activity.wait_idle().await;
        }
    }
    session.close_with(CloseReason::CallEnded, None).await;
}

/// Closes `session` because the agent's part in its phone call is over: queued speech plays
/// out, then the session closes with [`CloseReason::CallEnded`] (not `UserInitiated`, as
/// [`AgentSession::drain`] would). Nothing is sent to the server and the job goes on: see
/// [`CallControl::leave_call`] for the whole "the agent leaves the call" (e.g. after a warm
/// transfer connected the caller with a human), and [`CallControl::hang_up`] to end the call.
pub async fn close_call_session(session: &AgentSession) {
    close_for_call_end(session, true).await;
}

/// The server side of ending a call (`target`; nothing in console mode or with `None`), then
/// the job's shutdown with `reason`. Every way of ending a call ends here.
pub(crate) async fn finish_call(
    job: &JobContext,
    target: Option<&HangupTarget>,
    reason: impl Into<String>,
) -> Result<(), TelephonyError> {
    let result = match target {
        None => Ok(()),
        Some(_) if job.is_fake_job() => {
            tracing::info!("console mode: the call would end here");
            Ok(())
        }
        Some(HangupTarget::DeleteRoom) => {
            tracing::info!(room = job.room_name(), "hanging up: deleting the room");
            job.api()
                .room()
                .delete_room(job.room_name())
                .await
                .map_err(|e| room_error("DeleteRoom", &e))
        }
        Some(HangupTarget::RemoveParticipant(identity)) => {
            tracing::info!(participant = %identity, "hanging up: removing the caller");
            job.api()
                .room()
                .remove_participant(job.room_name(), identity)
                .await
                .map_err(|e| room_error("RemoveParticipant", &e))
        }
    };
    job.shutdown(reason);
    result
}

/// What hanging up waits for before the goodbye.
enum PlayoutWait<'a> {
    Nothing,
    /// The session's current speech (outside tools).
    CurrentSpeech,
    /// The words of the step that called this tool.
    ToolStep(&'a RunContext),
}

/// The one hang-up path: wait, goodbye, close the session ([`CloseReason::CallEnded`]), then
/// [`finish_call`].
async fn hang_up_with(
    job: &JobContext,
    session: Option<&AgentSession>,
    wait: PlayoutWait<'_>,
    options: HangupOptions,
) -> Result<(), TelephonyError> {
    let in_tool = crate::voice::in_tool();
    if let Some(session) = session.filter(|s| s.is_running()) {
        match wait {
            PlayoutWait::Nothing => {}
            PlayoutWait::ToolStep(ctx) => ctx.wait_for_playout().await,
            PlayoutWait::CurrentSpeech => {
                if let Some(speech) = session.current_speech() {
                    speech.wait_for_playout().await;
                }
            }
        }
        if let Some(goodbye) = &options.goodbye {
            if let Some(speech) = say_uninterruptible(session, goodbye) {
                if in_tool {
                    // The goodbye plays after the speech running this tool: the tool must
                    // return first, so the call ends in the background once it played.
                    let (job, session) = (job.clone(), session.clone());
                    tokio::spawn(async move {
                        speech.wait_for_playout().await;
                        close_for_call_end(&session, false).await;
                        if let Err(e) =
                            finish_call(&job, Some(&options.target), options.reason).await
                        {
                            tracing::warn!(error = %e, "cannot end the call");
                        }
                    });
                    return Ok(());
                }
                speech.wait_for_playout().await;
            }
        }
        close_for_call_end(session, false).await;
    }
    finish_call(job, Some(&options.target), options.reason).await
}

/// Phone-call control for a job: `use livekit_agents::telephony::CallControl;` then call these
/// on the [`JobContext`].
#[async_trait]
pub trait CallControl {
    /// The `sip.*` attributes of participant `identity` (`RoomService.GetParticipant`);
    /// `None` when it is not a SIP participant.
    async fn sip_participant_info(
        &self,
        identity: &str,
    ) -> Result<Option<SipParticipantInfo>, TelephonyError>;

    /// Hangs up: waits for the current speech (see [`HangupOptions::wait_for_playout`]), says
    /// the goodbye, closes `session` ([`CloseReason::CallEnded`]), deletes the room (or
    /// removes the caller) and shuts the job down with `options.reason`. In console mode
    /// nothing is sent to a server.
    ///
    /// From a tool, use [`hang_up_from_tool`](Self::hang_up_from_tool) (the current speech is
    /// the one running the tool: waiting for it would never end, so here it is not waited for).
    async fn hang_up(
        &self,
        session: Option<&AgentSession>,
        options: HangupOptions,
    ) -> Result<(), TelephonyError>;

    /// Hangs up from inside a tool: "say goodbye, then hang up". What the agent said in the
    /// step that called the tool (typically its goodbye) plays out first
    /// ([`RunContext::wait_for_playout`]), then as [`hang_up`](Self::hang_up) on the tool's
    /// session. With [`HangupOptions::goodbye`] the goodbye is queued after the tool's speech
    /// and this returns at once: the session closes and the call ends once it played (errors
    /// are logged).
    ///
    /// ```no_run
    /// use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
    /// use livekit_agents::telephony::{CallControl, HangupOptions};
    /// use livekit_agents::worker::JobContext;
    ///
    /// fn hang_up_tool(job: JobContext) -> FunctionTool {
    ///     FunctionTool::new("hang_up", "Hang up after saying goodbye.", move |ctx: RunContext, _: ()| {
    ///         let job = job.clone();
    ///         async move {
    ///             job.hang_up_from_tool(&ctx, HangupOptions::default())
    ///                 .await
    ///                 .map_err(|e| ToolError::new(e.to_string()))
    ///         }
    ///     })
    /// }
    /// ```
    async fn hang_up_from_tool(
        &self,
        ctx: &RunContext,
        options: HangupOptions,
    ) -> Result<(), TelephonyError>;

    /// The agent leaves a call that goes on without it (after a warm transfer connected the
    /// caller with a human): queued speech plays out, `session` closes with
    /// [`CloseReason::CallEnded`] ([`close_call_session`]), then the job shuts down with
    /// `reason`. The room and its participants stay. From a tool, run it once the tool's
    /// speech is done (its reply is queued speech too), e.g. from
    /// [`SpeechHandle::add_done_callback`](crate::voice::SpeechHandle::add_done_callback).
    async fn leave_call(&self, session: Option<&AgentSession>, reason: &str);

    /// Sends `TransferSIPParticipant` for `participant_identity` to `transfer_to` (`tel:`,
    /// `sip:` or a bare number) and returns once the destination answered.
    async fn transfer_sip_participant(
        &self,
        participant_identity: &str,
        transfer_to: &str,
        options: &TransferOptions,
    ) -> Result<(), TelephonyError>;

    /// The reference's cold transfer: waits for the current speech, says the announcement
    /// (outside tools only: from a tool, the model says it before calling the tool),
    /// transfers the caller; on success closes `session` ([`CloseReason::CallEnded`]) and
    /// shuts the job down ("call transferred"). On failure the session goes on and the typed
    /// error is returned (tell the caller; [`SipError::failure`] says why).
    async fn transfer_call(
        &self,
        session: Option<&AgentSession>,
        participant_identity: &str,
        transfer_to: &str,
        options: TransferOptions,
    ) -> Result<(), TelephonyError>;

    /// Places `call` (`CreateSIPParticipant`) into this job's room. With
    /// `wait_until_answered` (the default) it returns once the callee answered, or the SIP
    /// failure (busy, no answer, declined, ...).
    async fn dial(&self, call: &OutboundCall) -> Result<proto::SipParticipantInfo, TelephonyError>;
}

#[async_trait]
impl CallControl for JobContext {
    async fn sip_participant_info(
        &self,
        identity: &str,
    ) -> Result<Option<SipParticipantInfo>, TelephonyError> {
        if self.is_fake_job() {
            return Err(TelephonyError::Console("no participants to look up"));
        }
        let p = self
            .api()
            .room()
            .get_participant(self.room_name(), identity)
            .await
            .map_err(|e| room_error("GetParticipant", &e))?;
        Ok(SipParticipantInfo::from_attributes(&p.attributes))
    }

    async fn hang_up(
        &self,
        session: Option<&AgentSession>,
        options: HangupOptions,
    ) -> Result<(), TelephonyError> {
        let wait = if !options.wait_for_playout {
            PlayoutWait::Nothing
        } else if crate::voice::in_tool() {
            tracing::warn!(
                "hang_up called from a tool: not waiting for the tool's own speech \
                 (use hang_up_from_tool)"
            );
            PlayoutWait::Nothing
        } else {
            PlayoutWait::CurrentSpeech
        };
        hang_up_with(self, session, wait, options).await
    }

    async fn hang_up_from_tool(
        &self,
        ctx: &RunContext,
        options: HangupOptions,
    ) -> Result<(), TelephonyError> {
        let wait = if options.wait_for_playout {
            PlayoutWait::ToolStep(ctx)
        } else {
            PlayoutWait::Nothing
        };
        hang_up_with(self, ctx.session(), wait, options).await
    }

    async fn leave_call(&self, session: Option<&AgentSession>, reason: &str) {
        if let Some(session) = session {
            close_call_session(session).await;
        }
        tracing::info!(reason, "the agent leaves the call");
        // No server call: the room stays with its participants.
        if let Err(e) = finish_call(self, None, reason).await {
            tracing::warn!(error = %e, "cannot leave the call");
        }
    }

    async fn transfer_sip_participant(
        &self,
        participant_identity: &str,
        transfer_to: &str,
        options: &TransferOptions,
    ) -> Result<(), TelephonyError> {
        let to = transfer_destination(transfer_to).map_err(|e| SipError::InvalidRequest {
            reason: e.to_string(),
        })?;
        if self.is_fake_job() {
            return Err(TelephonyError::Console("cannot transfer a call"));
        }
        tracing::info!(participant = participant_identity, "transferring the call");
        self.api()
            .sip()
            .transfer_sip_participant(
                self.room_name().to_owned(),
                participant_identity.to_owned(),
                to,
                TransferSIPParticipantOptions {
                    play_dialtone: Some(options.play_dialtone),
                    ringing_timeout: options.ringing_timeout,
                    headers: (!options.headers.is_empty()).then(|| options.headers.clone()),
                    timeout: None,
                },
            )
            .await
            .map_err(|e| SipError::from_service_error("TransferSIPParticipant", &e).into())
    }

    async fn transfer_call(
        &self,
        session: Option<&AgentSession>,
        participant_identity: &str,
        transfer_to: &str,
        options: TransferOptions,
    ) -> Result<(), TelephonyError> {
        // Check the destination before announcing anything.
        transfer_destination(transfer_to).map_err(|e| SipError::InvalidRequest {
            reason: e.to_string(),
        })?;
        if let Some(session) = session.filter(|s| s.is_running()) {
            if crate::voice::in_tool() {
                // The tool's own speech (and anything said after it) plays only once the tool
                // returned: waiting here would never end.
                if options.announcement.is_some() {
                    tracing::warn!(
                        "transfer_call from a tool: the announcement cannot play before the \
                         transfer; have the model say it before calling the tool"
                    );
                }
            } else {
                if let Some(speech) = session.current_speech() {
                    speech.wait_for_playout().await;
                }
                if let Some(text) = &options.announcement {
                    say_and_wait(session, text).await;
                }
            }
        }
        self.transfer_sip_participant(participant_identity, transfer_to, &options)
            .await?;
        if let Some(session) = session {
            close_for_call_end(session, false).await;
        }
        finish_call(self, None, "call transferred").await
    }

    async fn dial(&self, call: &OutboundCall) -> Result<proto::SipParticipantInfo, TelephonyError> {
        validate_phone_destination(&call.phone_number).map_err(|e| SipError::InvalidRequest {
            reason: e.to_string(),
        })?;
        if call.sip_trunk_id.is_empty() {
            return Err(SipError::InvalidRequest {
                reason: OutboundCallError::NoTrunk.to_string(),
            }
            .into());
        }
        if self.is_fake_job() {
            return Err(TelephonyError::Console("cannot place a phone call"));
        }
        tracing::info!(room = self.room_name(), "dialing");
        self.api()
            .sip()
            .create_sip_participant(
                call.sip_trunk_id.clone(),
                call.phone_number.clone(),
                self.room_name().to_owned(),
                CreateSIPParticipantOptions {
                    participant_identity: call.participant_identity.clone(),
                    participant_name: call.participant_name.clone(),
                    dtmf: call.dtmf.clone(),
                    wait_until_answered: Some(call.wait_until_answered),
                    play_dialtone: Some(call.play_dialtone),
                    ringing_timeout: call.ringing_timeout,
                    headers: (!call.headers.is_empty()).then(|| call.headers.clone()),
                    ..Default::default()
                },
                None,
            )
            .await
            .map_err(|e| SipError::from_service_error("CreateSIPParticipant", &e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_gives_the_outbound_call() {
        let call = OutboundCall::from_metadata(
            r#"{"phone_number": " +1 (510) 555-0100 ", "sip_trunk_id": "ST_a"}"#,
            None,
        )
        .unwrap();
        assert_eq!(call.phone_number, "+15105550100");
        assert_eq!(call.participant_identity, "+15105550100");
        assert_eq!(call.sip_trunk_id, "ST_a");
        assert!(call.wait_until_answered);
        let call =
            OutboundCall::from_metadata(r#"{"phone_number": "sip:bob@example.com"}"#, Some("ST_b"))
                .unwrap();
        assert_eq!(call.sip_trunk_id, "ST_b");
        assert_eq!(
            OutboundCall::from_metadata("{}", Some("ST_b")),
            Err(OutboundCallError::NoPhoneNumber)
        );
        assert!(matches!(
            OutboundCall::from_metadata("not json", None),
            Err(OutboundCallError::Metadata { .. })
        ));
        assert!(matches!(
            OutboundCall::from_metadata(r#"{"phone_number": "+1; rm -rf"}"#, Some("ST")),
            Err(OutboundCallError::InvalidDestination { .. })
        ));
        let long = format!(r#"{{"phone_number": "+{}"}}"#, "1".repeat(10_000));
        match OutboundCall::from_metadata(&long, Some("ST")) {
            Err(OutboundCallError::InvalidDestination { destination: shown }) => {
                assert!(shown.len() < 60)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transfer_destinations_are_uris() {
        assert_eq!(
            transfer_destination("+15105550100").unwrap(),
            "tel:+15105550100"
        );
        assert_eq!(
            transfer_destination("tel:+15105550100").unwrap(),
            "tel:+15105550100"
        );
        assert_eq!(transfer_destination("sips:a@b").unwrap(), "sips:a@b");
        assert!(transfer_destination("sip:").is_err());
        assert!(transfer_destination("sip:a b@c").is_err());
        assert!(transfer_destination("").is_err());
    }
}
