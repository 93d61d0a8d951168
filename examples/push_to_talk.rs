//! Push-to-talk: the application, not the voice activity, decides when the user's turn starts
//! and ends (`TurnDetection::Manual`).
//!
//! User audio is off between turns. A turn is driven by:
//!
//! - **room RPC** (`dev`, `start`, `connect`): the frontend calls `start_turn` when the user
//!   presses the button, `end_turn` when they release it, `cancel_turn` to drop the turn. The
//!   RPC methods are registered on the agent's local participant through the `livekit` crate, so
//!   that part of the example is compiled only with the `room` feature
//!   (`cargo run --example push_to_talk --features room -- dev`).
//! - **keys in console** (with audio input: the microphone with the `console-audio` feature, or
//!   `--input-wav`): press Enter to start talking and Enter again to end the turn; type `c` then
//!   Enter to cancel the turn. (`console --text` has no audio: each typed line is already a turn.)
//!
//! The test at the bottom (`cargo test -p examples --example push_to_talk`) checks on scripted
//! fakes that the turn ends on release, not at the user's silence.
//!
//! Environment: `DEEPGRAM_API_KEY`, `OPENAI_API_KEY`, `CARTESIA_API_KEY`; for the room modes also
//! `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`.
//!
//! ```text
//! cargo run --example push_to_talk --features console-audio -- console
//! cargo run --example push_to_talk --features room -- dev
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use livekit_agents::cli;
use livekit_agents::voice::{
    Agent, AgentSession, CommitOptions, TurnDetection, TurnHandlingOptions,
};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;

/// The user pressed the button: stop the agent, forget any half turn, listen.
fn start_turn(session: &AgentSession) {
    session.interrupt();
    session.clear_user_turn();
    session.set_audio_input_enabled(true);
}

/// The user released the button: stop listening and answer what they said.
async fn end_turn(session: &AgentSession) -> Result<String, livekit_agents::voice::SessionError> {
    session.set_audio_input_enabled(false);
    session
        .commit_user_turn(CommitOptions::default().with_transcript_timeout(Duration::from_secs(10)))
        .await
}

/// The user cancelled: stop listening and drop the turn.
#[cfg_attr(test, allow(dead_code))]
fn cancel_turn(session: &AgentSession) {
    session.set_audio_input_enabled(false);
    session.clear_user_turn();
}

/// Console keys: Enter toggles talking, `c` + Enter cancels. Runs until stdin closes.
#[cfg_attr(test, allow(dead_code))]
async fn console_keys(session: AgentSession) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut talking = false;
    println!("[push-to-talk] press Enter to talk, Enter again to send, `c` + Enter to cancel");
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().eq_ignore_ascii_case("c") {
            cancel_turn(&session);
            talking = false;
            println!("[push-to-talk] turn cancelled");
        } else if talking {
            talking = false;
            match end_turn(&session).await {
                Ok(transcript) => println!("[push-to-talk] sent: {transcript}"),
                Err(e) => println!("[push-to-talk] {e}"),
            }
        } else {
            start_turn(&session);
            talking = true;
            println!("[push-to-talk] listening… (Enter to send)");
        }
    }
}

/// Registers `start_turn`, `end_turn` and `cancel_turn` RPC methods on the agent participant.
#[cfg(feature = "room")]
fn register_rpc_methods(ctx: &JobContext, session: &AgentSession) {
    use livekit::prelude::{RpcError, RpcInvocationData};

    let Some(room) = ctx.room() else {
        tracing::warn!("not connected to a room: push-to-talk RPC methods not registered");
        return;
    };
    let participant = room.local_participant();
    let s = session.clone();
    participant.register_rpc_method("start_turn".into(), move |_data: RpcInvocationData| {
        let s = s.clone();
        Box::pin(async move {
            start_turn(&s);
            Ok::<_, RpcError>(String::new())
        })
    });
    let s = session.clone();
    participant.register_rpc_method("end_turn".into(), move |_data: RpcInvocationData| {
        let s = s.clone();
        Box::pin(async move {
            end_turn(&s).await.map_err(|e| RpcError {
                code: 1500,
                message: e.to_string(),
                data: None,
            })
        })
    });
    let s = session.clone();
    participant.register_rpc_method("cancel_turn".into(), move |_data: RpcInvocationData| {
        let s = s.clone();
        Box::pin(async move {
            cancel_turn(&s);
            Ok::<_, RpcError>(String::new())
        })
    });
}

#[cfg_attr(test, allow(dead_code))]
async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let session = AgentSession::builder()
        .stt(Arc::new(deepgram::Stt::new(
            deepgram::SttOptions::default(),
        )?))
        .llm(Arc::new(openai::Llm::new(openai::LlmOptions::default())?))
        .tts(Arc::new(cartesia::Tts::new(
            cartesia::TtsOptions::default(),
        )?))
        .vad(examples::shared_vad(&ctx)?)
        .turn_handling(TurnHandlingOptions::default().with_turn_detection(TurnDetection::Manual))
        .build();
    let io = ctx.session_io(&session).await?;
    let has_audio_input = io.audio_input.is_some();
    // Nothing is heard until the user starts a turn.
    session.set_audio_input_enabled(false);
    let agent = Agent::new("You are a helpful assistant. Keep your answers short.");
    session.start(agent, io).await?;

    if ctx.is_fake_job() {
        // Console mode: keys drive the turns (only meaningful with audio input).
        if has_audio_input {
            tokio::spawn(console_keys(session.clone()));
        }
    } else {
        #[cfg(feature = "room")]
        register_rpc_methods(&ctx, &session);
    }
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    livekit_plugins_silero::register_files();
    cli::run_app(WorkerOptions::new(entrypoint).with_prewarm(examples::prewarm_vad))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use livekit_agents::io::memory::audio_input_channel;
    use livekit_agents::llm::{ChatItem, ChatRole};
    use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeVad, UserSpeech};
    use livekit_agents::voice::{
        Agent, AgentSession, SessionIo, TurnDetection, TurnHandlingOptions,
    };

    use super::{end_turn, start_turn};

    #[tokio::test(start_paused = true)]
    async fn the_turn_ends_when_the_button_is_released_not_at_silence() {
        let speech = vec![UserSpeech::new(0.5, 2.0, "What time is it?")];
        let llm = FakeLlm::new(vec![FakeLlmResponse::text(
            "It is noon.",
            Duration::from_millis(100),
        )]);
        let session = AgentSession::builder()
            .vad(Arc::new(FakeVad::new(speech.clone())))
            .stt(Arc::new(FakeStt::new(speech)))
            .llm(Arc::new(llm.clone()))
            .turn_handling(
                TurnHandlingOptions::default().with_turn_detection(TurnDetection::Manual),
            )
            .build();
        let (_mic, audio_input) = audio_input_channel();
        session.set_audio_input_enabled(false);
        session
            .start(
                Agent::new("Be brief."),
                SessionIo {
                    audio_input: Some(audio_input),
                    ..Default::default()
                },
            )
            .await
            .unwrap();

        start_turn(&session);
        // The user stopped speaking at 2 s, but in manual mode the turn stays open until
        // release: no reply yet (the LLM may already run preemptively, unseen).
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!has_reply(&session));

        let transcript = end_turn(&session).await.unwrap();
        assert_eq!(transcript, "What time is it?");
        assert!(!session.audio_input_enabled());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(has_reply(&session), "{:#?}", session.history().items());
    }

    fn has_reply(session: &AgentSession) -> bool {
        session.history().items().iter().any(|item| {
            matches!(item, ChatItem::Message(m)
                if m.role == ChatRole::Assistant && m.text_content().as_deref() == Some("It is noon."))
        })
    }
}
