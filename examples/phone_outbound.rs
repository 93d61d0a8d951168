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
//! the agent waits for the callee to speak first (outbound agents don't greet first). If the
//! model hears a voicemail greeting it calls `detected_answering_machine`: the agent leaves its
//! message, waits 0.5 s and hangs up. With a person, it delivers the reminder and ends the call
//! with `end_call`.
//!
//! In `console` mode nothing is dialed: you play the callee (type "Hello?" or a voicemail
//! greeting such as "You've reached Sam, leave a message after the beep").
//!
//! ```text
//! cargo run --example phone_outbound -- console --text
//! cargo run --example phone_outbound --features room -- dev
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use livekit_agents::cli;
use livekit_agents::telephony::{
    CallControl, EndCallTool, OutboundCall, TelephonyError, VoicemailMessage, VoicemailTool,
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
    if ctx.is_fake_job() {
        tracing::info!("console mode: no call is placed; you play the callee");
        return Ok(true);
    }
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
    if !place_call(&ctx).await? {
        session.close().await;
    }
    // No greeting: the callee speaks first.
    Ok(())
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
    use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
    use livekit_agents::voice::AgentSession;
    use livekit_agents::worker::{JobContext, WorkerOptions};

    use super::{caller_agent, run, VOICEMAIL};

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
}
