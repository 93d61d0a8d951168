//! An inbound phone agent: a keypad menu (DTMF), a PIN collected with `GetDtmfTask`, and
//! hanging up with the ready `end_call` tool.
//!
//! Callers reach the agent through LiveKit SIP (an inbound trunk and a dispatch rule naming this
//! agent, see `docs/guides/telephony.md`). The agent greets with a menu: press 1 for
//! appointments, 2 for billing, or just say what you need. Billing questions need the caller's
//! 4-digit PIN, which the `verify_pin` tool collects with `GetDtmfTask` (typed on the keypad or
//! spoken). When the caller is done, the model calls `end_call`: it says goodbye, the session
//! closes and the room is deleted, which hangs up the phone.
//!
//! In `console` mode there is no keypad: type `press 1` at the menu to simulate a key. At the
//! PIN prompt, type the digits (`1 2 3 4`): they count as spoken digits, which the model
//! records (keypad tones during the PIN need a phone, i.e. `dev` with a SIP trunk).
//!
//! Environment: `DEEPGRAM_API_KEY`, `OPENAI_API_KEY`, `CARTESIA_API_KEY`; for `dev`/`start` also
//! `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//!
//! ```text
//! cargo run --example phone_inbound -- console --text
//! cargo run --example phone_inbound --features room -- dev
//! ```

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use livekit_agents::cli;
use livekit_agents::llm::{ChatContext, ChatItem, ChatRole, FunctionTool, RunContext, ToolError};
use livekit_agents::telephony::{parse_dtmf, DtmfEvent, EndCallTool, GetDtmfTask};
use livekit_agents::types::ApiError;
use livekit_agents::voice::{
    nodes, Agent, AgentBehavior, AgentContext, AgentSession, ModelSettings, ReplyOptions,
    SessionEvent,
};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;
use parking_lot::Mutex;

const INSTRUCTIONS: &str = "You answer the phone for Acme Dental. Keep answers short: this is a \
phone call. Callers can press 1 for appointments or 2 for billing, or just tell you what they \
need. Before discussing billing, call verify_pin. When the caller is done, call end_call.";

/// What the menu keys mean.
fn menu_choice(key: DtmfEvent) -> Option<&'static str> {
    match key {
        DtmfEvent::One => Some("The caller pressed 1: help them with their appointment."),
        DtmfEvent::Two => {
            Some("The caller pressed 2: they have a billing question. Verify their PIN first.")
        }
        DtmfEvent::Zero => Some("The caller pressed 0: repeat the menu."),
        _ => None,
    }
}

/// Greets with the menu; answers menu keys; in console mode turns `press ...` into keys.
#[derive(Default)]
struct FrontDesk {
    /// User messages already looked at (a message stays last while replies are generated).
    pressed: Mutex<HashSet<String>>,
}

#[async_trait]
impl AgentBehavior for FrontDesk {
    async fn on_enter(&self, ctx: AgentContext) {
        spawn_menu(ctx.session.clone(), ctx.agent.id().to_owned());
        let _ = ctx
            .session
            .generate_reply(ReplyOptions::default().with_instructions(
                "Greet the caller: 'Thanks for calling Acme Dental. Press 1 for appointments, \
             2 for billing, or tell me how I can help.'",
            ));
    }

    async fn llm_node(
        &self,
        ctx: AgentContext,
        chat_ctx: ChatContext,
        tools: Vec<FunctionTool>,
        settings: ModelSettings,
    ) -> Result<Option<nodes::LlmChunkStream>, ApiError> {
        // Console stand-in for the keypad: a typed "press 2" becomes keys (as DTMF events from
        // the participant "console"), and a menu key is answered in this turn.
        let mut chat_ctx = chat_ctx;
        if let Some(ChatItem::Message(m)) = chat_ctx.items().last() {
            if m.role == ChatRole::User && self.pressed.lock().insert(m.id.clone()) {
                let text = m.text_content().unwrap_or_default();
                if let Some(keys) = text.trim().strip_prefix("press ") {
                    if let Ok(keys) = parse_dtmf(keys) {
                        for key in &keys {
                            let from = Some(CONSOLE_KEYPAD.to_owned());
                            ctx.session.push_sip_dtmf(key.code(), key.to_string(), from);
                        }
                        match keys.first().copied().and_then(menu_choice) {
                            Some(instructions) => {
                                chat_ctx.add_message(ChatRole::System, instructions);
                            }
                            None => return Ok(None),
                        }
                    }
                }
            }
        }
        nodes::default_llm_node(ctx, chat_ctx, tools, settings).await
    }
}

/// The participant identity of keys typed in console mode (`press 1`): answered in the turn
/// that typed them, not by [`spawn_menu`].
const CONSOLE_KEYPAD: &str = "console";

/// Menu keys pressed while the front desk is the active agent start a reply.
fn spawn_menu(session: AgentSession, agent_id: String) {
    let mut events = session.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Some(Ok(SessionEvent::SipDtmfReceived {
                    code,
                    digit,
                    participant_identity,
                })) => {
                    if participant_identity.as_deref() == Some(CONSOLE_KEYPAD) {
                        continue;
                    }
                    // Keys typed during the PIN task belong to the task.
                    if session.current_agent().map(|a| a.id() == agent_id) != Some(true) {
                        continue;
                    }
                    let Ok(key) = DtmfEvent::from_received(code, &digit) else {
                        continue;
                    };
                    if let Some(instructions) = menu_choice(key) {
                        session.interrupt();
                        let _ = session.generate_reply(
                            ReplyOptions::default().with_instructions(instructions),
                        );
                    }
                }
                Some(Ok(SessionEvent::Close { .. })) | None => break,
                _ => {}
            }
        }
    });
}

/// `verify_pin`: collects the 4-digit PIN with `GetDtmfTask`.
fn verify_pin_tool() -> FunctionTool {
    FunctionTool::raw(
        "verify_pin",
        "Ask the caller for their 4-digit account PIN (keypad or spoken) and verify it.",
        serde_json::json!({"type": "object", "properties": {}}),
        |ctx: RunContext, _args: serde_json::Value| async move {
            let session = ctx
                .session()
                .cloned()
                .ok_or_else(|| ToolError::new("no session"))?;
            let result = GetDtmfTask::new(4)
                .extra_instructions("Ask for the caller's 4-digit account PIN.")
                .run(&session)
                .await
                .map_err(|e| ToolError::new(format!("the PIN was not collected: {e}")))?;
            // A real agent checks the PIN against its records here.
            if result.user_input == "1 2 3 4" {
                Ok("PIN verified. The balance is $120, due on the 15th.".to_string())
            } else {
                Ok("That PIN does not match our records.".to_string())
            }
        },
    )
}

fn front_desk(ctx: Option<&JobContext>) -> Agent {
    Agent::builder()
        .id("front_desk")
        .instructions(INSTRUCTIONS)
        .tool(verify_pin_tool())
        .tool(EndCallTool::new(ctx.cloned()).build())
        .behavior(FrontDesk::default())
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
    session.start(front_desk(Some(&ctx)), io).await?;
    log_caller(&ctx);
    Ok(())
}

/// Logs the caller's SIP info (number, trunk) from the participant's `sip.*` attributes.
#[cfg(feature = "room")]
fn log_caller(ctx: &JobContext) {
    use livekit_agents::telephony::room::sip_participant_info;
    if let Some(room) = ctx.room() {
        for p in room.remote_participants().into_values() {
            if let Some(info) = sip_participant_info(&p) {
                tracing::info!(
                    call_id = ?info.call_id,
                    trunk = ?info.trunk_phone_number,
                    status = ?info.call_status,
                    "caller connected"
                );
            }
        }
    }
}

#[cfg(not(feature = "room"))]
fn log_caller(_ctx: &JobContext) {}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    livekit_plugins_silero::register_files();
    cli::run_app(
        WorkerOptions::new(entrypoint)
            .with_prewarm(examples::prewarm_vad)
            .with_agent_name("phone-inbound"),
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

    use super::{front_desk, run};

    const TTFT: Duration = Duration::from_millis(100);

    async fn start(llm: FakeLlm) -> (AgentSession, livekit_agents::io::memory::MemoryTextOutput) {
        let started = text_session(llm, front_desk(None)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        started
    }

    #[tokio::test(start_paused = true)]
    async fn keypad_menu_pin_and_hang_up() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::text("Thanks for calling Acme Dental. Press 1 or 2.", TTFT),
            FakeLlmResponse::text("Sure, billing. Let me verify you first.", TTFT),
            FakeLlmResponse::tool_call("verify_pin", "{}", TTFT),
            FakeLlmResponse::text("Please enter your 4-digit PIN.", TTFT),
            FakeLlmResponse::text("Your balance is $120, due on the 15th.", TTFT),
            FakeLlmResponse::tool_call("end_call", "{}", TTFT),
            FakeLlmResponse::text("Goodbye!", TTFT),
        ]);
        let (session, text) = start(llm.clone()).await;
        // Key 2 (typed in console as "press 2").
        session.push_sip_dtmf(2, "2", Some("caller".into()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(format!("{:?}", llm.requests()[1].chat_ctx).contains("pressed 2"));
        // The caller asks about billing: the PIN task starts.
        // (Not `run`: the reply waits for the PIN, typed below.)
        let _ = session.generate_reply(
            livekit_agents::voice::ReplyOptions::default().with_user_input("What's my balance?"),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(session.current_agent().unwrap().id(), "get_dtmf_task");
        for key in ["1", "2", "3", "4"] {
            session.push_sip_dtmf(key.parse().unwrap(), key, None);
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(session.current_agent().unwrap().id(), "front_desk");
        let _ = session.run("Great, that's all, bye.").await;
        session.wait_closed().await;
        let said = text.segments();
        assert_eq!(
            said.first().unwrap(),
            "Thanks for calling Acme Dental. Press 1 or 2."
        );
        assert!(said.contains(&"Your balance is $120, due on the 15th.".to_string()));
        assert_eq!(said.last().unwrap(), "Goodbye!");
    }

    #[tokio::test(start_paused = true)]
    async fn console_press_is_a_keypad_stand_in() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::text("Welcome. Press 1 or 2.", TTFT),
            FakeLlmResponse::text("Let's look at your appointment.", TTFT),
        ]);
        let (session, text) = start(llm.clone()).await;
        let mut events = session.events();
        // What the console does with a typed line: a user turn.
        let _ = session.run("press 1").await;
        let mut saw_key = false;
        while let Some(Ok(ev)) = events.try_recv() {
            if let livekit_agents::voice::SessionEvent::SipDtmfReceived { code, .. } = ev {
                saw_key = code == 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(saw_key);
        assert!(text
            .segments()
            .contains(&"Let's look at your appointment.".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn console_run_menu_pin_and_hang_up() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::text("Thanks for calling Acme Dental. Press 1 or 2.", TTFT),
            FakeLlmResponse::text("Sure, billing. Let me verify you first.", TTFT),
            FakeLlmResponse::tool_call("verify_pin", "{}", TTFT),
            FakeLlmResponse::text("Please enter your 4-digit PIN.", TTFT),
            FakeLlmResponse::tool_call(
                "record_inputs",
                r#"{"inputs": ["1", "2", "3", "4"]}"#,
                TTFT,
            ),
            FakeLlmResponse::text("Your balance is $120, due on the 15th.", TTFT),
            FakeLlmResponse::tool_call("end_call", "{}", TTFT),
            FakeLlmResponse::text("Goodbye!", TTFT),
        ]);
        let worker = {
            let llm = llm.clone();
            WorkerOptions::new(move |ctx: JobContext| {
                let session = AgentSession::builder().llm(Arc::new(llm.clone())).build();
                run(ctx, session)
            })
        };
        let report = run_script(
            worker,
            &[
                "press 2",
                "What's my balance?",
                "1 2 3 4",
                "Great, that's all, bye.",
            ],
            Duration::from_secs(3),
        )
        .await;
        // The line after the digits is read once the PIN task handed back to the front desk
        // and its balance answer (the reply that ran the task) played; that turn ends the call.
        assert_eq!(
            conversation(&report),
            [
                "agent: Thanks for calling Acme Dental. Press 1 or 2.",
                "user: press 2",
                "agent: Sure, billing. Let me verify you first.",
                "user: What's my balance?",
                "agent: Please enter your 4-digit PIN.",
                "user: 1 2 3 4",
                r#"[tool] record_inputs({"inputs": ["1", "2", "3", "4"]}) -> "#,
                "[tool] verify_pin({}) -> PIN verified. The balance is $120, due on the 15th.",
                "agent: Your balance is $120, due on the 15th.",
                "user: Great, that's all, bye.",
                "[tool] end_call({}) -> say goodbye to the user",
                "agent: Goodbye!",
            ],
            "{:#?}",
            report.lines
        );
        // The menu key reached the model as the caller's choice.
        assert!(format!("{:?}", llm.requests()[1].chat_ctx).contains("pressed 2"));
        assert_eq!(close_line(&report), Some("[session closed] CallEnded"));
    }
}
