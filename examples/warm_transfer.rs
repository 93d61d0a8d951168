//! Warm transfer to a human: the caller is put on hold, the agent calls a human, summarises the
//! call for them, and connects them to the caller; if the human does not answer or declines,
//! the caller is back with the agent, who explains.
//!
//! The `transfer_to_human` tool runs `WarmTransferTask` with a `SipConsultation`: the human
//! (`HUMAN_AGENT_PHONE`, dialed through `LIVEKIT_SIP_OUTBOUND_TRUNK`) is called into the room
//! `<room>-human-agent`; a second session summarises the conversation for them; when they say
//! to connect, `MoveParticipant` brings them into the caller's room and the agent leaves.
//!
//! In `console` mode there is no phone network: a simulated consultation plays the human
//! ("Hi, this is Sam from billing", then "OK, put them through"), and its conversation is
//! logged.
//!
//! ```text
//! cargo run --example warm_transfer -- console --text
//! HUMAN_AGENT_PHONE=+15105550123 cargo run --example warm_transfer --features room -- dev
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livekit_agents::cli;
use livekit_agents::io::memory::MemoryTextOutput;
use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
use livekit_agents::telephony::{
    close_call_session, CallControl, Consultation, EndCallTool, OutboundCall, SipConsultation,
    TelephonyError, WarmTransferHandle, WarmTransferTask, OUTBOUND_TRUNK_ENV,
};
use livekit_agents::voice::{Agent, AgentSession, ReplyOptions, SessionIo};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;

const INSTRUCTIONS: &str = "You are a support agent for Acme Billing. Help with simple questions. \
If the caller asks for a person or you cannot help, tell them you will connect them and call \
transfer_to_human. If the transfer fails, explain why and offer to help further.";

/// The identity the human gets in the rooms.
const HUMAN_IDENTITY: &str = "human-agent-sip";

/// Console stand-in for the phone network: the "human" answers after 2 s and speaks two
/// scripted lines; their conversation with the agent is logged.
struct SimulatedConsultation {
    transcript: MemoryTextOutput,
}

#[async_trait]
impl Consultation for SimulatedConsultation {
    async fn join(&self) -> Result<SessionIo, TelephonyError> {
        Ok(SessionIo {
            text_output: Some(Arc::new(self.transcript.clone())),
            ..Default::default()
        })
    }
    async fn dial(&self) -> Result<(), TelephonyError> {
        tracing::info!("[consultation] ringing the human agent (simulated)");
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }
    async fn move_to_caller(&self) -> Result<(), TelephonyError> {
        tracing::info!("[consultation] the human agent joins the caller (simulated)");
        Ok(())
    }
    async fn closed(&self) -> String {
        std::future::pending().await
    }
    async fn leave(&self) {
        for line in self.transcript.segments() {
            tracing::info!("[consultation] agent said: {line}");
        }
    }
}

/// In console mode, plays the human's side once their session is up.
fn simulate_human(handle: WarmTransferHandle) {
    tokio::spawn(async move {
        let human = loop {
            if let Some(s) = handle.human_session() {
                break s;
            }
            if handle.state().is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        for line in ["Hi, this is Sam from billing.", "OK, put them through."] {
            tracing::info!("[consultation] human: {line}");
            match human.generate_reply(ReplyOptions::default().with_user_input(line)) {
                Ok(speech) => speech.wait_for_playout().await,
                Err(_) => return,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn consultation_for(ctx: Option<&JobContext>) -> Result<Arc<dyn Consultation>, ToolError> {
    match ctx {
        Some(ctx) if !ctx.is_fake_job() => {
            let phone = std::env::var("HUMAN_AGENT_PHONE")
                .map_err(|_| ToolError::new("no human agent number is configured"))?;
            let trunk = std::env::var(OUTBOUND_TRUNK_ENV)
                .map_err(|_| ToolError::new("no outbound trunk is configured"))?;
            let mut call = OutboundCall::new(phone, trunk);
            call.participant_identity = HUMAN_IDENTITY.into();
            Ok(Arc::new(SipConsultation::new(ctx.clone(), call)))
        }
        _ => Ok(Arc::new(SimulatedConsultation {
            transcript: MemoryTextOutput::new(),
        })),
    }
}

/// `transfer_to_human`: runs the warm transfer; on success the agent leaves the call.
fn transfer_tool(ctx: Option<JobContext>) -> FunctionTool {
    FunctionTool::raw(
        "transfer_to_human",
        "Connect the caller with a human agent (warm transfer). Tell the caller first.",
        serde_json::json!({"type": "object", "properties": {}}),
        move |run: RunContext, _args: serde_json::Value| {
            let ctx = ctx.clone();
            async move {
                let session = run
                    .session()
                    .cloned()
                    .ok_or_else(|| ToolError::new("no session"))?;
                let consultation = consultation_for(ctx.as_ref())?;
                let simulated = ctx.as_ref().is_none_or(|c| c.is_fake_job());
                let task = WarmTransferTask::new(consultation, &session.history(), HUMAN_IDENTITY);
                if simulated {
                    simulate_human(task.handle());
                }
                match task.run(&session).await {
                    Ok(result) => {
                        tracing::info!(human = %result.human_agent_identity, "transfer completed");
                        // The caller and the human talk now; the agent leaves once this
                        // turn is over (closing now would cancel this tool's output). The
                        // session closes with `CallEnded`; the room stays.
                        let leave = session.clone();
                        let job = ctx.clone();
                        let go = move || {
                            tokio::spawn(async move {
                                match job {
                                    Some(job) => {
                                        job.leave_call(Some(&leave), "warm transfer completed")
                                            .await
                                    }
                                    None => close_call_session(&leave).await,
                                }
                            });
                        };
                        match run.speech_handle() {
                            Some(speech) => speech.add_done_callback(move |_| go()),
                            None => go(),
                        }
                        Ok("The caller is now connected to a human agent.".to_string())
                    }
                    // The model sees why and explains it to the caller.
                    Err(e) => Err(ToolError::new(format!("the transfer failed: {e}"))),
                }
            }
        },
    )
}

fn support_agent(ctx: Option<&JobContext>) -> Agent {
    Agent::builder()
        .id("support")
        .instructions(INSTRUCTIONS)
        .tool(transfer_tool(ctx.cloned()))
        .tool(EndCallTool::new(ctx.cloned()).build())
        .build()
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
    let io = ctx.session_io(&session).await?;
    session.start(support_agent(Some(&ctx)), io).await?;
    let _ = session.generate_reply(
        ReplyOptions::default().with_instructions("Greet the caller and ask how you can help."),
    );
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    livekit_plugins_silero::register_files();
    cli::run_app(
        WorkerOptions::new(entrypoint)
            .with_prewarm(examples::prewarm_vad)
            .with_agent_name("warm-transfer"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use examples::console_test::{close_line, conversation, run_script};
    use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
    use livekit_agents::voice::{AgentSession, SessionIo};
    use livekit_agents::worker::{JobContext, WorkerOptions};

    use super::{run, support_agent};

    const TTFT: Duration = Duration::from_millis(100);

    /// One scripted LLM serves both sessions (the human's session uses the caller's models),
    /// in the order the requests come.
    fn script(greeting: bool) -> FakeLlm {
        let mut replies = Vec::new();
        if greeting {
            replies.push(FakeLlmResponse::text("Acme Billing, how can I help?", TTFT));
        }
        replies.extend([
            FakeLlmResponse::tool_call("transfer_to_human", "{}", TTFT),
            FakeLlmResponse::text("Hi Sam, the caller disputes an invoice.", TTFT),
            FakeLlmResponse::tool_call("connect_to_caller", "{}", TTFT),
        ]);
        FakeLlm::new(replies).with_fallback(FakeLlmResponse::text("You're connected now.", TTFT))
    }

    #[tokio::test(start_paused = true)]
    async fn the_simulated_human_is_briefed_and_connected() {
        let llm = script(false);
        let session = AgentSession::builder().llm(Arc::new(llm.clone())).build();
        let mut events = session.events();
        session
            .start(support_agent(None), SessionIo::default())
            .await
            .unwrap();
        let _ = session.generate_reply(
            livekit_agents::voice::ReplyOptions::default()
                .with_user_input("My invoice is wrong, I want a person."),
        );
        tokio::time::timeout(Duration::from_secs(60), session.wait_closed())
            .await
            .unwrap();
        // The agent left the call: the session ended with the call.
        let mut reason = None;
        while let Some(ev) = events.try_recv() {
            if let Ok(livekit_agents::voice::SessionEvent::Close { reason: r, .. }) = ev {
                reason = Some(r)
            }
        }
        assert_eq!(reason, Some(livekit_agents::voice::CloseReason::CallEnded));
        let briefing = format!("{:?}", llm.requests()[1].chat_ctx);
        assert!(
            briefing.contains("Caller: My invoice is wrong, I want a person."),
            "{briefing}"
        );
        let outputs: Vec<String> = session
            .history()
            .items()
            .iter()
            .filter_map(|i| match i {
                livekit_agents::llm::ChatItem::FunctionCallOutput(o) => Some(o.output.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(outputs, ["The caller is now connected to a human agent."]);
    }

    #[tokio::test(start_paused = true)]
    async fn console_run_transfers_to_the_simulated_human() {
        let llm = script(true);
        let worker = {
            let llm = llm.clone();
            WorkerOptions::new(move |ctx: JobContext| {
                let session = AgentSession::builder().llm(Arc::new(llm.clone())).build();
                run(ctx, session)
            })
        };
        let report = run_script(
            worker,
            &["My invoice is wrong, I want a person."],
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(
            conversation(&report),
            [
                "agent: Acme Billing, how can I help?",
                "user: My invoice is wrong, I want a person.",
                "[tool] transfer_to_human({}) -> The caller is now connected to a human agent.",
                "agent: You're connected now.",
            ],
            "{:#?}",
            report.lines
        );
        // The human was briefed with the conversation, then the agent left.
        let briefing = format!("{:?}", llm.requests()[2].chat_ctx);
        assert!(
            briefing.contains("Caller: My invoice is wrong, I want a person."),
            "{briefing}"
        );
        assert_eq!(close_line(&report), Some("[session closed] CallEnded"));
    }
}
