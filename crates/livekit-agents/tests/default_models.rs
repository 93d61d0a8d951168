//! Default models: a session built without a VAD gets the registered default VAD; `no_vad()`
//! opts out. One test: the registry is process-wide.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use livekit_agents::testing::FakeVad;
use livekit_agents::vad::{clear_default_vad, register_default_vad, Vad};
use livekit_agents::voice::AgentSession;

#[test]
fn sessions_without_a_vad_get_the_registered_default_unless_they_opt_out() {
    clear_default_vad();
    assert!(
        AgentSession::builder().build().vad().is_none(),
        "nothing registered"
    );

    register_default_vad(|| Ok(Arc::new(FakeVad::new(vec![])) as Arc<dyn Vad>));
    let session = AgentSession::builder().build();
    assert_eq!(session.vad().unwrap().label(), FakeVad::new(vec![]).label());
    assert!(
        AgentSession::builder().no_vad().build().vad().is_none(),
        "explicit none"
    );

    // An explicit VAD wins over the default.
    let mine: Arc<dyn Vad> = Arc::new(FakeVad::new(vec![]));
    let session = AgentSession::builder().vad(mine.clone()).build();
    assert!(Arc::ptr_eq(&session.vad().unwrap(), &mine));

    // A failing default leaves the session without a VAD.
    register_default_vad(|| Err("model file missing".into()));
    assert!(AgentSession::builder().build().vad().is_none());
    clear_default_vad();
}
