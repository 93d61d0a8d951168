//! An outbound caller: dials the number in the dispatch metadata, waits for the answer, and
//! handles voicemail.
//!
//! Dispatch the agent with metadata naming the number (the reference's convention):
//!
//! ```text
//! lk dispatch create --new-room --agent-name phone-outbound \
//!     --metadata '{"phone_number": "+15105550100"}'
//! ```
//!
//! The agent places the call with `CreateSIPParticipant(wait_until_answered)` through the trunk
//! in `LIVEKIT_SIP_OUTBOUND_TRUNK` (or `sip_trunk_id` in the metadata). If the callee is busy,
//! declines or does not answer, the typed SIP error is logged and the job ends. Once answered,
//! the agent waits for the callee to speak first (outbound agents don't greet first), and
//! answering-machine detection (`Amd`) listens to the greeting, holding the agent's speech
//! meanwhile:
//! - a voicemail greeting: the agent's held reply is dropped, the rest of the greeting gets no
//!   reply, and once the line is silent the agent leaves its message and hangs up
//!   (`leave_voicemail`);
//! - a mailbox that takes no message: the agent hangs up;
//! - a person: the held reply plays; the agent delivers the reminder and ends the call with
//!   `end_call`;
//! - not sure: the model decides; it can still call `detected_answering_machine`.
//!
//! In `console` mode nothing is dialed: you play the callee (type "Hello?" or a voicemail
//! greeting such as "You've reached Sam, leave a message after the beep"). Typed lines are not
//! heard by the detector (it listens to speech and transcripts), so there the model's
//! `detected_answering_machine` tool handles voicemail.
//!
//! ```text
//! cargo run --example phone_outbound -- console --text
//! cargo run --example phone_outbound --features room -- dev
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use livekit_agents::cli;
use livekit_agents::llm::Llm;
use livekit_agents::telephony::{
    close_call_session, dtmf_sender_for, leave_voicemail, Amd, AmdCategory, AmdOptions,
    CallControl, EndCallTool, HangupOptions, OutboundCall, TelephonyError, VoicemailMessage,
    VoicemailTool,
};
use livekit_agents::voice::{Agent, AgentSession};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;

const INSTRUCTIONS: &str = "You are calling on behalf of Acme Dental to remind the callee of \
their appointment tomorrow at 10am. Wait for them to speak first. If you hear a voicemail \
greeting, call detected_answering_machine. Otherwise confirm the appointment, answer briefly, \
and call end_call when done.";

const VOICEMAIL: &str = "Hi, this is Acme Dental reminding you of your appointment tomorrow at \
10am. Call us back at 555-0100 if you need to reschedule. Goodbye!";

fn caller_agent(ctx: Option<&JobContext>) -> Agent {
    Agent::builder()
        .id("outbound_caller")
        .instructions(INSTRUCTIONS)
        .tool(VoicemailTool::new(ctx.cloned(), VoicemailMessage::Text(VOICEMAIL.into())).build())
        .tool(EndCallTool::new(ctx.cloned()).build())
        .build()
}

/// Places the call; `Ok(false)` when the callee could not be reached (the job ends).
async fn place_call(ctx: &JobContext) -> anyhow::Result<bool> {
    let call = OutboundCall::from_metadata(ctx.metadata(), None)?;
    match ctx.dial(&call).await {
        Ok(info) => {
            tracing::info!(call_id = %info.sip_call_id, "the callee answered");
            Ok(true)
        }
        Err(TelephonyError::Sip(e)) => {
            tracing::warn!(
                status = ?e.sip_status_code(),
                failure = ?e.failure(),
                "the call did not connect: {e}"
            );
            ctx.shutdown(format!("call not connected: {e}"));
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
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
        .build();
    run(ctx, session).await
}

/// The agent's part once its session is built (the tests pass a session on scripted models).
async fn run(ctx: JobContext, session: AgentSession) -> anyhow::Result<()> {
    // Join the room and start listening before dialing, so the first words are heard.
    let io = ctx.session_io(&session).await?;
    session.start(caller_agent(Some(&ctx)), io).await?;
    if ctx.is_fake_job() {
        tracing::info!("console mode: no call is placed; you play the callee");
        return Ok(());
    }
    if !place_call(&ctx).await? {
        session.close().await;
        return Ok(());
    }
    // No greeting: the callee speaks first.
    screen_call(&session, Some(&ctx), None).await;
    Ok(())
}

/// Answering-machine detection on the answered call (`llm`: the classifier, default the
/// session's), then what the verdict calls for. The agent's speech is held until the verdict.
async fn screen_call(session: &AgentSession, ctx: Option<&JobContext>, llm: Option<Arc<dyn Llm>>) {
    let dtmf = ctx.and_then(dtmf_sender_for);
    let amd = match Amd::start(session, llm, AmdOptions::default(), dtmf) {
        Ok(amd) => amd,
        Err(e) => {
            tracing::warn!(error = %e, "no answering-machine detection");
            return;
        }
    };
    let verdict = match amd.execute().await {
        Ok(verdict) => verdict,
        Err(e) => {
            tracing::info!(error = %e, "no answering-machine verdict");
            return;
        }
    };
    tracing::info!(category = ?verdict.category, "who answered");
    let ended = match verdict.category {
        // `amd` lives on meanwhile: the rest of the greeting gets no reply.
        AmdCategory::MachineVm => {
            leave_voicemail(session, ctx, &VoicemailMessage::Text(VOICEMAIL.into())).await
        }
        AmdCategory::MachineUnavailable => match ctx {
            Some(ctx) => {
                let options = HangupOptions {
                    reason: "mailbox unavailable".into(),
                    ..Default::default()
                };
                ctx.hang_up(Some(session), options).await
            }
            None => {
                close_call_session(session).await;
                Ok(())
            }
        },
        // A person: the reply held during detection plays now. A phone menu: IVR navigation
        // runs. Not sure: the model decides.
        _ => Ok(()),
    };
    if let Err(e) = ended {
        tracing::warn!(error = %e, "cannot end the call");
    }
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    livekit_plugins_silero::register_files();
    cli::run_app(
        WorkerOptions::new(entrypoint)
            .with_prewarm(examples::prewarm_vad)
            .with_agent_name("phone-outbound"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use examples::console_test::{close_line, conversation, run_script, text_session};
    use livekit_agents::io::memory::{audio_input_channel, AudioInputSender, MemoryTextOutput};
    use livekit_agents::testing::{FakeLlm, FakeLlmResponse, FakeStt, FakeVad, UserSpeech};
    use livekit_agents::voice::{AgentSession, CloseReason, SessionEvent, SessionIo};
    use livekit_agents::worker::{JobContext, WorkerOptions};

    use super::{caller_agent, run, screen_call, VOICEMAIL};

    const TTFT: Duration = Duration::from_millis(100);

    /// The example's worker on a scripted model.
    fn worker(llm: FakeLlm) -> WorkerOptions {
        WorkerOptions::new(move |ctx: JobContext| {
            let session = AgentSession::builder().llm(Arc::new(llm.clone())).build();
            run(ctx, session)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_agent_waits_for_the_callee_then_leaves_a_voicemail() {
        let llm = FakeLlm::new(vec![FakeLlmResponse::tool_call(
            "detected_answering_machine",
            "{}",
            TTFT,
        )]);
        let (session, text) = text_session(llm.clone(), caller_agent(None)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            llm.requests().is_empty(),
            "outbound agents don't greet first"
        );
        let _ = session
            .run("You've reached Sam. Leave a message after the beep.")
            .await;
        session.wait_closed().await;
        assert_eq!(text.segments(), [VOICEMAIL]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_person_gets_the_reminder_and_the_call_ends() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::text(
                "Hi, this is Acme Dental: your appointment is tomorrow at 10am.",
                TTFT,
            ),
            FakeLlmResponse::tool_call("end_call", "{}", TTFT),
            FakeLlmResponse::text("Great, see you then. Goodbye!", TTFT),
        ]);
        let (session, text) = text_session(llm, caller_agent(None)).await;
        let _ = session.run("Hello?").await;
        let _ = session.run("Yes, I'll be there.").await;
        session.wait_closed().await;
        assert_eq!(
            text.segments().last().unwrap(),
            "Great, see you then. Goodbye!"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn console_run_with_a_voicemail() {
        let llm = FakeLlm::new(vec![FakeLlmResponse::tool_call(
            "detected_answering_machine",
            "{}",
            TTFT,
        )]);
        let report = run_script(
            worker(llm.clone()),
            &["You've reached Sam. Leave a message after the beep."],
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(
            conversation(&report),
            [
                "user: You've reached Sam. Leave a message after the beep.",
                "[tool] detected_answering_machine({}) -> ",
                &format!("agent: {VOICEMAIL}"),
            ],
            "{:#?}",
            report.lines
        );
        assert_eq!(close_line(&report), Some("[session closed] CallEnded"));
        // Nothing was said before the callee spoke.
        assert_eq!(llm.requests().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn console_run_with_a_person() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::text(
                "Hi, this is Acme Dental: your appointment is tomorrow at 10am.",
                TTFT,
            ),
            FakeLlmResponse::tool_call("end_call", "{}", TTFT),
            FakeLlmResponse::text("Great, see you then. Goodbye!", TTFT),
        ]);
        let report = run_script(
            worker(llm),
            &["Hello?", "Yes, I'll be there."],
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(
            conversation(&report),
            [
                "user: Hello?",
                "agent: Hi, this is Acme Dental: your appointment is tomorrow at 10am.",
                "user: Yes, I'll be there.",
                "[tool] end_call({}) -> say goodbye to the user",
                "agent: Great, see you then. Goodbye!",
            ],
            "{:#?}",
            report.lines
        );
        assert_eq!(close_line(&report), Some("[session closed] CallEnded"));
    }

    /// The answered call as the detector hears it: `speech` through a fake VAD and STT, the
    /// agent on `llm`, what it says on the returned text output.
    async fn answered_call(
        speech: Vec<UserSpeech>,
        llm: FakeLlm,
    ) -> (AgentSession, MemoryTextOutput, AudioInputSender) {
        let session = AgentSession::builder()
            .vad(Arc::new(FakeVad::new(speech.clone())))
            .stt(Arc::new(FakeStt::new(speech)))
            .llm(Arc::new(llm))
            .build();
        let (audio, input) = audio_input_channel();
        let text = MemoryTextOutput::new();
        let io = SessionIo {
            audio_input: Some(input),
            text_output: Some(Arc::new(text.clone())),
            ..Default::default()
        };
        session.start(caller_agent(None), io).await.unwrap();
        (session, text, audio)
    }

    fn label(category: &str) -> Arc<dyn livekit_agents::llm::Llm> {
        let answer = FakeLlmResponse::tool_call(
            "save_prediction",
            format!(r#"{{"label": "{category}"}}"#),
            Duration::from_millis(200),
        );
        Arc::new(FakeLlm::new(vec![]).with_fallback(answer))
    }

    #[tokio::test(start_paused = true)]
    async fn detection_hears_a_voicemail_and_the_message_is_left() {
        let agent =
            FakeLlm::new(vec![]).with_fallback(FakeLlmResponse::text("Hi Sam, how are you?", TTFT));
        let (session, text, _audio) = answered_call(
            vec![
                UserSpeech::new(0.5, 6.0, "Hi, you've reached Sam."),
                UserSpeech::new(6.8, 8.0, "Leave a message after the tone."),
            ],
            agent,
        )
        .await;
        let mut events = session.events();
        screen_call(&session, None, Some(label("machine-vm"))).await;
        assert_eq!(text.segments(), [VOICEMAIL]);
        let mut closed = None;
        while let Some(ev) = events.try_recv() {
            if let Ok(SessionEvent::Close { reason, .. }) = ev {
                closed = Some(reason);
            }
        }
        assert_eq!(closed, Some(CloseReason::CallEnded));
    }

    #[tokio::test(start_paused = true)]
    async fn detection_hears_a_person_and_the_held_reply_plays() {
        let reminder = "Hi, this is Acme Dental: your appointment is tomorrow at 10am.";
        let agent = FakeLlm::new(vec![FakeLlmResponse::text(reminder, TTFT)]);
        let (session, text, _audio) =
            answered_call(vec![UserSpeech::new(0.5, 1.2, "Hello?")], agent).await;
        screen_call(&session, None, Some(label("human"))).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(text.segments(), [reminder]);
        assert!(session.is_running());
        session.close().await;
    }
}
