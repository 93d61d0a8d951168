//! Phone calls: what an agent needs when its user is a SIP participant (a caller bridged into
//! the room by LiveKit SIP).
//!
//! - Call control through the server API ([`CallControl`] on
//!   [`JobContext`](crate::worker::JobContext)): hang up, cold transfer, outbound dialing, a
//!   SIP participant's `sip.*` attributes; SIP failures as typed [`SipError`]s.
//! - DTMF (`dtmf`): keys and their RFC 4733 codes, received tones as
//!   [`SessionEvent::SipDtmfReceived`](crate::voice::SessionEvent::SipDtmfReceived), digit
//!   collection ([`DtmfCollector`], [`GetDtmfTask`]), sending keys ([`send_dtmf_events_tool`]).
//! - Ready tools: [`EndCallTool`] (`end_call`), [`VoicemailTool`]
//!   (`detected_answering_machine`).
//! - Warm transfer ([`WarmTransferTask`]): hold, consult a human, merge or come back.
//! - Answering-machine detection ([`Amd`]: the reference's timing rules around an LLM
//!   classification of the greeting, holding the agent's speech until the verdict;
//!   [`classify_greeting`] for the model call alone; [`leave_voicemail`] for the voicemail
//!   flow).
//! - IVR navigation ([`IvrDetection`]): DTMF tool, silence and menu-loop handling.
//!
//! See `docs/guides/telephony.md`.

pub(crate) mod amd;
mod call;
pub(crate) mod dtmf;
mod get_dtmf;
pub(crate) mod ivr;
#[cfg(feature = "room")]
pub mod room;
pub(crate) mod sip;
mod tools;
pub(crate) mod warm_transfer;

pub use amd::{
    classify_greeting, Amd, AmdCategory, AmdClassifier, AmdError, AmdOptions, AmdPrediction,
    AmdReason,
};
pub use amd::{AMD_PROMPT, MAX_EXTENSION, MAX_EXTENSIONS};
pub use call::{
    close_call_session, transfer_destination, validate_phone_destination, CallControl,
    HangupOptions, HangupTarget, OutboundCall, OutboundCallError, TelephonyError, TransferOptions,
    OUTBOUND_TRUNK_ENV,
};
pub use dtmf::MAX_COLLECTED_KEYS;
pub use dtmf::{
    format_dtmf, parse_dtmf, DtmfCollectOptions, DtmfCollector, DtmfEvent, DtmfOutcome, InvalidDtmf,
};
pub use get_dtmf::{GetDtmfResult, GetDtmfTask};
pub use ivr::{IvrDetection, IvrEvent, IvrOptions, LoopDetectorOptions, TfidfLoopDetector};
pub use sip::{SipCallStatus, SipError, SipFailure, SipParticipantInfo};
pub use tools::{
    dtmf_sender_for, leave_voicemail, send_dtmf_events_tool, DtmfSender, EndCallTool,
    MemoryDtmfSender, VoicemailMessage, VoicemailTool, DTMF_PUBLISH_DELAY, END_CALL_DESCRIPTION,
    MAX_DTMF_EVENTS_PER_CALL, VOICEMAIL_HANGUP_DELAY,
};
pub use warm_transfer::{
    format_conversation_history, CallerState, Consultation, HoldAudio, HumanState, PlayerHoldAudio,
    SipConsultation, TransferState, WarmTransferHandle, WarmTransferResult, WarmTransferTask,
};
pub use warm_transfer::{warm_transfer_instructions, WARM_TRANSFER_PERSONA};
