//! The room side of telephony (feature `room`): sending DTMF from the agent's participant and
//! reading a remote participant's SIP info.

use std::sync::Arc;

use async_trait::async_trait;
use livekit::prelude::{RemoteParticipant, Room, SipDTMF};

use super::dtmf::DtmfEvent;
use super::sip::SipParticipantInfo;
use super::tools::DtmfSender;

/// Sends `key` from the room's local participant (`publish_dtmf`, RFC 4733 code and digit).
pub async fn publish_dtmf(room: &Room, key: DtmfEvent) -> Result<(), String> {
    room.local_participant()
        .publish_dtmf(SipDTMF {
            code: key.code(),
            digit: key.to_string(),
            destination_identities: Vec::new(),
        })
        .await
        .map_err(|e| e.to_string())
}

/// A [`DtmfSender`] over a connected room.
#[derive(Clone)]
pub struct RoomDtmfSender {
    room: Arc<Room>,
}

impl std::fmt::Debug for RoomDtmfSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomDtmfSender").finish_non_exhaustive()
    }
}

impl RoomDtmfSender {
    /// A sender publishing through `room`.
    pub fn new(room: Arc<Room>) -> Self {
        Self { room }
    }
}

#[async_trait]
impl DtmfSender for RoomDtmfSender {
    async fn send_dtmf(&self, key: DtmfEvent) -> Result<(), String> {
        publish_dtmf(&self.room, key).await
    }
}

/// The SIP info of a remote participant (from its `sip.*` attributes); `None` if it has none.
pub fn sip_participant_info(participant: &RemoteParticipant) -> Option<SipParticipantInfo> {
    SipParticipantInfo::from_attributes(&participant.attributes())
}
