//! `AgentTask`s that collect structured information, run in order by a `TaskGroup`, then hand
//! control back.
//!
//! When the session starts, the receptionist agent runs a `TaskGroup` of two tasks:
//! `collect_contact`, a short-lived agent whose only job is to get the caller's name and email
//! address (its `record_contact` tool completes it with a typed `Contact`), then the prebuilt
//! `GetAddressTask` for their postal address. While the second runs, the caller can go back
//! ("actually, my email is wrong"): the group's `out_of_scope` tool reruns the contact task,
//! then the address task. The receptionist then resumes, with a summary of the tasks'
//! conversation in its own, and uses the values (here, to greet the caller by name and to
//! look up their appointment).
//!
//! The tests at the bottom (`cargo test -p examples --example task_agent`) script the LLM with
//! `FakeLlm` and check the values, the receptionist's resumption, going back to the contact
//! task, and a rejected email.
//!
//! Environment: `DEEPGRAM_API_KEY`, `OPENAI_API_KEY`, `CARTESIA_API_KEY`; for `dev`, `start` and
//! `connect` also `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//! Model files: `cargo run --example task_agent -- download-files` (Silero VAD).
//!
//! ```text
//! cargo run --example task_agent -- console --text
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use livekit_agents::cli;
use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
use livekit_agents::voice::{
    Agent, AgentBehavior, AgentContext, AgentSession, AgentTask, ReplyOptions,
};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_agents::workflows::{GetAddressResult, GetAddressTask, TaskGroup};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;

/// What the task collects. The same struct is the tool's argument schema, so the model has
/// to provide every field.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Contact {
    /// The caller's full name.
    name: String,
    /// The caller's email address, spelled out by the caller.
    email: String,
}

/// The task's agent asks first, as soon as it becomes active.
struct AskFirst;

#[async_trait]
impl AgentBehavior for AskFirst {
    async fn on_enter(&self, ctx: AgentContext) {
        if let Err(e) = ctx.session.generate_reply(ReplyOptions::default()) {
            tracing::warn!(error = %e, "cannot ask for the contact details");
        }
    }
}

/// A task completing with a [`Contact`].
fn collect_contact() -> AgentTask<Contact> {
    AgentTask::new(|done| {
        Agent::builder()
            .id("collect_contact")
            .instructions(
                "Ask for the caller's full name and email address. Read the email back to \
                 confirm it, then call record_contact. Do not talk about anything else.",
            )
            .tool(FunctionTool::new(
                "record_contact",
                "Record the caller's confirmed name and email address.",
                move |_ctx: RunContext, contact: Contact| {
                    let done = done.clone();
                    async move {
                        if !contact.email.contains('@') {
                            // The model sees this and asks again.
                            return Err(ToolError::new("that is not a valid email address"));
                        }
                        done.complete(contact);
                        Ok(())
                    }
                },
            ))
            .behavior(AskFirst)
            .build()
    })
}

/// The main agent: runs the task group on entry, then helps the caller.
struct Receptionist;

#[async_trait]
impl AgentBehavior for Receptionist {
    async fn on_enter(&self, ctx: AgentContext) {
        let results = TaskGroup::new()
            .add(
                "contact",
                "Collect the caller's name and email address",
                collect_contact,
            )
            .add("address", "Collect the caller's postal address", || {
                GetAddressTask::new().build()
            })
            .run(&ctx.session)
            .await;
        let results = match results {
            Ok(results) => results,
            Err(e) => {
                tracing::warn!(error = %e, "the intake tasks did not complete");
                return;
            }
        };
        let (Some(contact), Some(address)) = (
            results.get::<Contact>("contact"),
            results.get::<GetAddressResult>("address"),
        ) else {
            tracing::warn!(?results, "the intake tasks returned no values");
            return;
        };
        tracing::info!(?contact, ?address, "intake done");
        ctx.agent.update_instructions(format!(
            "You are a dental clinic receptionist. The caller is {} ({}), living at {}. Their \
             next appointment is on Tuesday at 10am. Help them with their appointment.",
            contact.name, contact.email, address.address
        ));
        let _ = ctx
            .session
            .generate_reply(ReplyOptions::default().with_instructions(format!(
                "Thank {} and ask how you can help with their appointment.",
                contact.name
            )));
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
    let receptionist = Agent::builder()
        .id("receptionist")
        .instructions("You are a dental clinic receptionist.")
        .behavior(Receptionist)
        .build();
    let io = ctx.session_io(&session).await?;
    session.start(receptionist, io).await?;
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

    use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
    use livekit_agents::voice::{Agent, AgentSession, SessionIo};

    use super::Receptionist;

    const TTFT: Duration = Duration::from_millis(100);

    /// A session running the receptionist (which starts the contact task on entry).
    async fn start(script: Vec<FakeLlmResponse>) -> AgentSession {
        let llm = FakeLlm::new(script).with_fallback(FakeLlmResponse::text("Okay.", TTFT));
        let session = AgentSession::builder().llm(Arc::new(llm)).build();
        let receptionist = Agent::builder()
            .id("receptionist")
            .behavior(Receptionist)
            .build();
        session
            .start(receptionist, SessionIo::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        session
    }

    const ADDRESS: &str = r#"{"street_address":"1 Main St","unit_number":"","locality":"Springfield","country":"United States"}"#;

    #[tokio::test(start_paused = true)]
    async fn the_tasks_return_their_values_and_the_receptionist_resumes() {
        let session = start(vec![
            FakeLlmResponse::text("Hello! May I have your name and email?", TTFT),
            FakeLlmResponse::tool_call(
                "record_contact",
                r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#,
                TTFT,
            ),
            FakeLlmResponse::text("Thanks. What is your address?", TTFT),
            FakeLlmResponse::tool_call("update_address", ADDRESS, TTFT),
        ])
        .await;
        assert_eq!(session.current_agent().unwrap().id(), "collect_contact");

        let result = session.run("Ada Lovelace, ada@example.com").await.unwrap();
        result.expect().contains_function_call("record_contact");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(session.current_agent().unwrap().id(), "get_address_task");

        session
            .run("1 Main St, Springfield, United States")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;

        let agent = session.current_agent().unwrap();
        assert_eq!(agent.id(), "receptionist");
        assert!(agent.instructions().contains(
            "Ada Lovelace (ada@example.com), living at 1 Main St Springfield United States"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_caller_can_go_back_to_the_contact_task() {
        let session = start(vec![
            FakeLlmResponse::text("Hello! May I have your name and email?", TTFT),
            FakeLlmResponse::tool_call(
                "record_contact",
                r#"{"name":"Ada Lovelace","email":"ada@example.com"}"#,
                TTFT,
            ),
            FakeLlmResponse::text("Thanks. What is your address?", TTFT),
            FakeLlmResponse::tool_call("out_of_scope", r#"{"task_ids":["contact"]}"#, TTFT),
            FakeLlmResponse::text("Sure, what is the right email?", TTFT),
            FakeLlmResponse::tool_call(
                "record_contact",
                r#"{"name":"Ada Lovelace","email":"ada@lovelace.org"}"#,
                TTFT,
            ),
            FakeLlmResponse::text("Thanks. What is your address?", TTFT),
            FakeLlmResponse::tool_call("update_address", ADDRESS, TTFT),
        ])
        .await;
        session.run("Ada Lovelace, ada@example.com").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        session.run("Wait, my email is wrong").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(session.current_agent().unwrap().id(), "collect_contact");
        session.run("ada@lovelace.org").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        session.run("1 Main St, Springfield").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let agent = session.current_agent().unwrap();
        assert_eq!(agent.id(), "receptionist");
        assert!(agent.instructions().contains("(ada@lovelace.org)"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalid_email_keeps_the_task_running() {
        let session = start(vec![
            FakeLlmResponse::text("Hello! May I have your name and email?", TTFT),
            FakeLlmResponse::tool_call(
                "record_contact",
                r#"{"name":"Ada Lovelace","email":"ada at example dot com"}"#,
                TTFT,
            ),
        ])
        .await;

        let result = session
            .run("Ada Lovelace, ada at example dot com")
            .await
            .unwrap();

        let mut expect = result.expect();
        expect.next_event().is_function_call("record_contact", None);
        let output = expect
            .next_event()
            .is_function_call_output(None, Some(true));
        assert!(
            output.output.contains("not a valid email"),
            "{}",
            output.output
        );
        assert_eq!(session.current_agent().unwrap().id(), "collect_contact");
    }
}
