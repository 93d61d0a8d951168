//! Session hooks: the few places where the activity loop consults features that live outside
//! `voice` (telephony's answering-machine detection and IVR navigation, feature `server`).
//!
//! - Speech hold: while a hook holds speech, no speech takes the floor (its generation may
//!   run; nothing plays). Releasing wakes the loop ([`AgentSession::release_held_speech`]).
//! - User turns: every committed user turn is shown to the hooks; one that takes it gets the
//!   turn recorded in the history but not answered (the reference's `skip_reply` from AMD).
//! - Tools: tools every agent of the session gets, from its first reply on.

use std::sync::Arc;

use parking_lot::Mutex;

use super::session::AgentSession;
use crate::llm::FunctionTool;

/// What a feature outside `voice` can ask of the activity loop. Methods are called from the
/// loop: they must not block or call back into the session.
pub(crate) trait SessionHook: Send + Sync + 'static {
    /// Whether speech must wait (checked each time the floor could be given).
    fn holds_speech(&self) -> bool {
        false
    }

    /// A user turn saying `transcript` was committed; `true` takes it (no automatic reply).
    fn takes_user_turn(&self, _transcript: &str) -> bool {
        false
    }

    /// Tools added to every agent's (after its own and the session's, by name).
    fn tools(&self) -> Vec<FunctionTool> {
        Vec::new()
    }
}

/// The hooks of one session, with the id each was added under.
#[derive(Default)]
pub(crate) struct SessionHooks {
    list: Mutex<Vec<(u64, Arc<dyn SessionHook>)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl SessionHooks {
    /// Whether any hook holds speech.
    pub(crate) fn holds_speech(&self) -> bool {
        let list = self.list.lock();
        !list.is_empty() && list.iter().any(|(_, h)| h.holds_speech())
    }

    /// Shows the turn to every hook; whether one took it.
    pub(crate) fn takes_user_turn(&self, transcript: &str) -> bool {
        let hooks: Vec<Arc<dyn SessionHook>> =
            self.list.lock().iter().map(|(_, h)| h.clone()).collect();
        // Every hook hears the turn (no short-circuit).
        let mut taken = false;
        for hook in &hooks {
            taken |= hook.takes_user_turn(transcript);
        }
        taken
    }

    /// Appends the hooks' tools missing from `tools` (by name).
    pub(crate) fn append_tools(&self, tools: &mut Vec<FunctionTool>) {
        let hooks: Vec<Arc<dyn SessionHook>> =
            self.list.lock().iter().map(|(_, h)| h.clone()).collect();
        for tool in hooks.iter().flat_map(|h| h.tools()) {
            if !tools.iter().any(|t| t.name() == tool.name()) {
                tools.push(tool);
            }
        }
    }
}

#[cfg_attr(not(feature = "server"), allow(dead_code))]
impl AgentSession {
    /// Adds `hook`; returns the id that removes it.
    pub(crate) fn add_hook(&self, hook: Arc<dyn SessionHook>) -> u64 {
        let hooks = &self.inner.hooks;
        let id = hooks
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hooks.list.lock().push((id, hook));
        id
    }

    /// Removes the hook added under `id` (speech it held may go: see
    /// [`release_held_speech`](Self::release_held_speech)).
    pub(crate) fn remove_hook(&self, id: u64) {
        self.inner.hooks.list.lock().retain(|(i, _)| *i != id);
        self.release_held_speech();
    }

    /// A hook stopped holding speech: the loop gives the floor again.
    pub(crate) fn release_held_speech(&self) {
        if let Some(activity) = self.current_activity() {
            activity.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hold(bool);
    impl SessionHook for Hold {
        fn holds_speech(&self) -> bool {
            self.0
        }
        fn takes_user_turn(&self, transcript: &str) -> bool {
            transcript.contains("beep")
        }
    }

    #[test]
    fn hooks_hold_take_turns_and_go() {
        let session = AgentSession::builder().build();
        assert!(!session.inner.hooks.holds_speech());
        let a = session.add_hook(Arc::new(Hold(true)));
        let b = session.add_hook(Arc::new(Hold(false)));
        assert!(session.inner.hooks.holds_speech());
        assert!(session.inner.hooks.takes_user_turn("after the beep"));
        assert!(!session.inner.hooks.takes_user_turn("hello"));
        session.remove_hook(a);
        assert!(!session.inner.hooks.holds_speech());
        session.remove_hook(b);
        let mut tools = Vec::new();
        session.inner.hooks.append_tools(&mut tools);
        assert!(tools.is_empty());
    }
}
