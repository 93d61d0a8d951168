//! Turn options resolved per agent and per call: an agent's own turn detection and endpointing
//! over the session's (`AgentTurnHandling`), and the AEC warm-up's per-call default (none on an
//! outbound SIP call), decided from the participant the audio input comes from.

use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;

use super::super::agent::Agent;
use super::super::options::{AecWarmup, EndpointingOptions, TurnDetection};
use super::AgentSession;
use crate::audio::filter::FilterParams;
use crate::room_logic::ParticipantKind;

/// The attribute LiveKit sets on a SIP participant that came in through a dispatch rule: an
/// inbound call has it, a call the agent dialed (outbound) does not.
const SIP_RULE_ID_ATTRIBUTE: &str = "sip.ruleID";

/// Whether `participant` is an outbound SIP call (the reference's test: a SIP participant
/// without `sip.ruleID`).
pub(crate) fn is_outbound_sip(participant: &FilterParams) -> bool {
    participant.participant_kind == Some(ParticipantKind::Sip)
        && !participant
            .participant_attributes
            .contains_key(SIP_RULE_ID_ATTRIBUTE)
}

impl AgentSession {
    /// The turn detection while `agent` is active: its own (resolved against its models; if
    /// they cannot serve it, the session's applies), else the session's.
    pub(crate) fn turn_detection_for(&self, agent: &Agent) -> TurnDetection {
        let session = self.turn_detection();
        let Some(td) = agent.turn_handling().turn_detection.clone() else {
            return session;
        };
        let has_stt = agent.stt().is_some() || self.inner.models.stt.is_some();
        match self.resolve_turn_detection_with(td, has_stt) {
            Ok(td) => td,
            Err(e) => {
                tracing::warn!(agent = agent.id(), error = %e, "the agent's turn detection cannot be used; the session's applies");
                session
            }
        }
    }

    /// The endpointing while `agent` is active: its own values over the session's (which
    /// `update_options` may have changed).
    pub(crate) fn endpointing_for(&self, agent: &Agent) -> EndpointingOptions {
        let session = self.inner.state.lock().endpointing;
        agent.turn_handling().endpointing(session)
    }

    /// Follows who the audio input comes from; each newly linked participant decides the AEC
    /// warm-up of its call (see [`AgentSession::on_participant_linked`]).
    pub(super) fn watch_participant(
        &self,
        mut participant: tokio::sync::watch::Receiver<FilterParams>,
    ) {
        let current = participant.borrow_and_update().clone();
        self.on_participant_linked(&current);
        // Weak: the task is owned by the session's state.
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            while participant.changed().await.is_ok() {
                let current = participant.borrow_and_update().clone();
                match weak.upgrade() {
                    Some(inner) => AgentSession { inner }.on_participant_linked(&current),
                    None => return,
                }
            }
        });
        self.inner.state.lock().participant_watch = Some(AbortOnDropHandle::new(task));
    }

    /// A participant was linked: unless the warm-up was set explicitly, an outbound SIP call
    /// gets none (a running one ends) and any other call the default, started afresh at the
    /// agent's next `speaking` if the previous call's warm-up is over (the reference's
    /// `_on_room_io_participant_linked`).
    pub(crate) fn on_participant_linked(&self, participant: &FilterParams) {
        let setting = self.inner.options.aec_warmup_duration;
        if participant.participant_identity.is_none() || setting != AecWarmup::Auto {
            return;
        }
        let outbound = is_outbound_sip(participant);
        let warmup = setting.duration(outbound);
        let mut st = self.inner.state.lock();
        st.aec_warmup_remaining = warmup.unwrap_or_default();
        let now = tokio::time::Instant::now();
        let running = st.aec_warmup_until.is_some_and(|until| now < until);
        if warmup.is_none() || !running {
            st.aec_warmup_until = None;
        }
        tracing::debug!(
            outbound_sip = outbound,
            ?warmup,
            "aec warm-up for the linked participant"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kind: Option<ParticipantKind>, attrs: &[(&str, &str)]) -> FilterParams {
        FilterParams {
            participant_identity: Some("p".into()),
            participant_kind: kind,
            participant_attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_a_sip_participant_without_a_dispatch_rule_is_an_outbound_call() {
        assert!(is_outbound_sip(&params(
            Some(ParticipantKind::Sip),
            &[("sip.callID", "SCL_1")]
        )));
        assert!(!is_outbound_sip(&params(
            Some(ParticipantKind::Sip),
            &[("sip.ruleID", "SDR_1")]
        )));
        assert!(!is_outbound_sip(&params(
            Some(ParticipantKind::Standard),
            &[]
        )));
        assert!(!is_outbound_sip(&params(None, &[])));
    }
}
