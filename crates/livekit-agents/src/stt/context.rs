//! Applies [`SttContextOptions`](super::SttContextOptions) to the STT of an agent as it becomes
//! active: the session's keyterms, and conversation items forwarded while it stays active.

use tokio::sync::broadcast::error::RecvError;

use crate::voice::{Agent, AgentSession, SessionEvent};

/// Gives `agent`'s STT (its own, else the session's) the session's keyterms, and forwards the
/// conversation to it until another agent becomes active or the session closes.
pub(crate) fn bind(session: &AgentSession, agent: &Agent) {
    let Some(stt) = agent.stt().or_else(|| session.stt()) else {
        return;
    };
    let opts = &session.options().stt_context_options;
    if !opts.keyterms.is_empty() {
        if stt.supports_keyterms() {
            stt.update_session_keyterms(&opts.keyterms);
        } else {
            tracing::warn!(
                stt = %stt.label(),
                "keyterms are not supported by this STT, ignoring keyterms update"
            );
        }
    }
    if !(opts.forward_chat_context && stt.supports_chat_context()) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut events = session.subscribe();
    let session = session.clone();
    let agent = agent.clone();
    rt.spawn(async move {
        loop {
            match events.recv().await {
                Ok(SessionEvent::ConversationItemAdded { item }) => {
                    if session.current_agent().as_ref() != Some(&agent) {
                        return;
                    }
                    stt.push_conversation_item(&item);
                }
                Ok(SessionEvent::Close { .. }) | Err(RecvError::Closed) => return,
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "STT context: conversation items skipped");
                }
            }
        }
    });
}
