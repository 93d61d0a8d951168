//! Multi-agent handoffs with typed session data.
//!
//! An intro agent asks for the user's name and where they are; when it has both, its tool
//! stores them in the session's userdata (a typed `StoryData`) and returns the story agent,
//! which hands the conversation over (the reference's `return StoryAgent(...), "..."`). The
//! story agent reads the same userdata in its own tool, and can hand back to the intro agent.
//! Each agent greets the user in `on_enter`.
//!
//! The tests at the bottom (`cargo test -p examples --example multi_agent`) script the LLM with
//! `FakeLlm` and check the handoff and the userdata.
//!
//! Environment: `DEEPGRAM_API_KEY`, `OPENAI_API_KEY`, `CARTESIA_API_KEY`; for `dev`, `start` and
//! `connect` also `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//! Model files: `cargo run --example multi_agent -- download-files` (Silero VAD).
//!
//! ```text
//! cargo run --example multi_agent -- console --text
//! ```

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use livekit_agents::cli;
use livekit_agents::llm::Userdata;
use livekit_agents::llm::{FunctionTool, RunContext, ToolError};
use livekit_agents::voice::{Agent, AgentBehavior, AgentContext, AgentSession, ReplyOptions};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;

/// What the agents learn about the user; shared by every agent of the session.
#[derive(Debug, Default)]
struct StoryData {
    name: Option<String>,
    location: Option<String>,
}

/// The session's userdata: tools change it, so it sits behind a mutex.
type SharedStoryData = Mutex<StoryData>;

/// Runs `f` on the session's `StoryData`, or fails the tool call with a message for the model.
fn with_story_data<R>(
    ctx: &RunContext,
    f: impl FnOnce(&mut StoryData) -> R,
) -> Result<R, ToolError> {
    // A missing or mistyped userdata is a typed error; `?` makes it a tool error.
    let data = ctx.userdata::<SharedStoryData>()?;
    let mut data = data.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(f(&mut data))
}

/// Speaks first when an agent becomes active.
struct GreetOnEnter;

#[async_trait]
impl AgentBehavior for GreetOnEnter {
    async fn on_enter(&self, ctx: AgentContext) {
        if let Err(e) = ctx.session.generate_reply(ReplyOptions::default()) {
            tracing::warn!(error = %e, "cannot greet the user");
        }
    }
}

/// Arguments of `information_gathered`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct IntroInfo {
    /// The user's first name.
    name: String,
    /// Where the user is (a city or a country).
    location: String,
}

fn intro_agent() -> Agent {
    Agent::builder()
        .id("intro")
        .instructions(
            "You are a storyteller. Greet the user, then ask for their name and where they live. \
             Once you know both, call information_gathered.",
        )
        .tool(FunctionTool::new(
            "information_gathered",
            "Called when the user has given their name and location.",
            |ctx: RunContext, info: IntroInfo| async move {
                with_story_data(&ctx, |data| {
                    data.name = Some(info.name.clone());
                    data.location = Some(info.location.clone());
                })?;
                // Returning an agent hands the conversation over; the text goes to the model.
                Ok::<_, ToolError>((
                    story_agent(&info.name, &info.location),
                    "The user is now talking to the story agent.",
                ))
            },
        ))
        .behavior(GreetOnEnter)
        .build()
}

/// Arguments of tools without arguments.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoArgs {}

fn story_agent(name: &str, location: &str) -> Agent {
    Agent::builder()
        .id("story")
        .instructions(format!(
            "You tell short interactive stories. The user is {name} from {location}; use both in \
             the story. If the user wants to change their details, call restart."
        ))
        .tool(FunctionTool::new(
            "restart",
            "Start over with new user details.",
            |ctx: RunContext, _args: NoArgs| async move {
                with_story_data(&ctx, |data| *data = StoryData::default())?;
                Ok::<_, ToolError>(intro_agent())
            },
        ))
        .behavior(GreetOnEnter)
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
        .userdata(Userdata::new(SharedStoryData::default()))
        .build();
    let io = ctx.session_io(&session).await?;
    session.start(intro_agent(), io).await?;
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

    use livekit_agents::llm::ChatRole;
    use livekit_agents::llm::Userdata;
    use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
    use livekit_agents::voice::{AgentSession, SessionIo};

    use super::{intro_agent, SharedStoryData};

    const TTFT: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn intro_stores_the_details_and_hands_over_to_the_story_agent() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::text("Hi! What is your name, and where do you live?", TTFT),
            FakeLlmResponse::tool_call(
                "information_gathered",
                r#"{"name":"Ada","location":"Paris"}"#,
                TTFT,
            ),
        ])
        .with_fallback(FakeLlmResponse::text("Once upon a time, in Paris…", TTFT));
        let session = AgentSession::builder()
            .llm(Arc::new(llm.clone()))
            .userdata(Userdata::new(SharedStoryData::default()))
            .build();
        session
            .start(intro_agent(), SessionIo::default())
            .await
            .unwrap();
        // The intro agent greets in `on_enter`.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let result = session.run("I'm Ada, from Paris").await.unwrap();

        let expect = result.expect();
        expect.contains_function_call("information_gathered");
        expect.contains_agent_handoff().is_agent_handoff("story");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(session.current_agent().unwrap().id(), "story");
        // The typed userdata was filled by the intro agent's tool.
        let data = session.userdata().get::<SharedStoryData>().unwrap();
        let data = data.lock().unwrap();
        assert_eq!(data.name.as_deref(), Some("Ada"));
        assert_eq!(data.location.as_deref(), Some("Paris"));
        // The story agent's instructions use them, and it spoke first.
        let story_request = llm.requests().last().unwrap().clone();
        let system = story_request.chat_ctx.items()[0].clone();
        assert!(matches!(system, livekit_agents::llm::ChatItem::Message(m)
            if m.role == ChatRole::System
                && m.text_content().unwrap_or_default().contains("Ada from Paris")));
        assert_eq!(story_request.tools[0].name, "restart");
    }
}
