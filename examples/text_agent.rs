//! Text-only agent, with tests written with the testing API.
//!
//! The session has an LLM and nothing else: no STT, TTS or VAD, and its ports carry no audio,
//! so it reads chat text (typed lines in `console --text`, `lk.chat` messages in a room) and
//! answers with text. The agent looks up orders with one tool.
//!
//! The tests at the bottom drive the same agent with a scripted `FakeLlm` on tokio's paused
//! clock and assert what it did with `AgentSession::run` and `RunResult`; run them with
//! `cargo test -p examples --example text_agent`.
//!
//! Environment: `OPENAI_API_KEY`; for `dev`, `start` and `connect` also `LIVEKIT_URL`,
//! `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//!
//! ```text
//! cargo run --example text_agent -- console --text
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use livekit_agents::cli;
use livekit_agents::llm::{function_tool, ToolError, ToolOutput};
use livekit_agents::room_logic::RoomOptions;
use livekit_agents::voice::{Agent, AgentSession};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_openai as openai;

/// What `lookup_order` tells the model.
#[derive(serde::Serialize)]
struct OrderStatus {
    order_id: String,
    status: &'static str,
    delivery: &'static str,
}

/// Look up the status of an order by its number.
///
/// # Arguments
///
/// * `order_id` - The order number, digits only.
#[function_tool]
async fn lookup_order(order_id: String) -> Result<ToolOutput, ToolError> {
    // A fixed table stands in for a real database.
    let (status, delivery) = match order_id.as_str() {
        "1001" => ("shipped", "tomorrow"),
        "1002" => ("being prepared", "in three days"),
        _ => return Err(ToolError::new(format!("no order {order_id}"))),
    };
    ToolOutput::json(&OrderStatus {
        order_id,
        status,
        delivery,
    })
}

/// The agent, shared by `entrypoint` and the tests.
fn support_agent() -> Agent {
    Agent::builder()
        .id("support")
        .instructions(
            "You are the support assistant of an online bakery. Answer in one or two sentences. \
             Use lookup_order to answer questions about an order; ask for the order number if \
             the user did not give it.",
        )
        .tool(lookup_order())
        .build()
}

#[cfg_attr(test, allow(dead_code))]
async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let session = AgentSession::builder()
        .llm(Arc::new(openai::Llm::new(openai::LlmOptions::default())?))
        .build();
    // Text only, even in a room where the user publishes a microphone.
    let io = ctx
        .session_io_with(
            &session,
            RoomOptions {
                audio_input: false,
                audio_output: false,
                ..Default::default()
            },
        )
        .await?;
    session.start(support_agent(), io).await?;
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    cli::run_app(WorkerOptions::new(entrypoint))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use livekit_agents::llm::ChatRole;
    use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
    use livekit_agents::voice::{AgentSession, SessionIo};

    use super::support_agent;

    const TTFT: Duration = Duration::from_millis(100);

    /// A started text-only session whose LLM answers from `script`.
    async fn session_with(script: Vec<FakeLlmResponse>) -> (AgentSession, FakeLlm) {
        let llm = FakeLlm::new(script);
        let session = AgentSession::builder().llm(Arc::new(llm.clone())).build();
        session
            .start(support_agent(), SessionIo::default())
            .await
            .unwrap();
        (session, llm)
    }

    #[tokio::test(start_paused = true)]
    async fn answers_a_greeting_without_tools() {
        let (session, llm) =
            session_with(vec![FakeLlmResponse::text("Hello! How can I help?", TTFT)]).await;

        let result = session.run("Hi there").await.unwrap();

        let mut expect = result.expect();
        let reply = expect.next_event().is_message(ChatRole::Assistant);
        assert_eq!(
            reply.text_content().as_deref(),
            Some("Hello! How can I help?")
        );
        expect.no_more_events();
        // The model was offered the tool and saw the user's message.
        let request = &llm.requests()[0];
        assert_eq!(request.tools[0].name, "lookup_order");
        let last = request.chat_ctx.items().last().unwrap().clone();
        assert!(matches!(last, livekit_agents::llm::ChatItem::Message(m)
            if m.role == ChatRole::User && m.text_content().as_deref() == Some("Hi there")));
    }

    #[tokio::test(start_paused = true)]
    async fn looks_up_an_order_then_answers() {
        let (session, _) = session_with(vec![
            FakeLlmResponse::tool_call("lookup_order", r#"{"order_id":"1001"}"#, TTFT),
            FakeLlmResponse::text("Order 1001 has shipped and arrives tomorrow.", TTFT),
        ])
        .await;

        let result = session.run("Where is my order 1001?").await.unwrap();

        let mut expect = result.expect();
        expect.next_event().is_function_call(
            "lookup_order",
            Some(serde_json::json!({"order_id": "1001"})),
        );
        let output = expect
            .next_event()
            .is_function_call_output(None, Some(false));
        let output: serde_json::Value = serde_json::from_str(&output.output).unwrap();
        assert_eq!(output["status"], "shipped");
        assert_eq!(output["delivery"], "tomorrow");
        expect.next_event().is_message(ChatRole::Assistant);
        expect.no_more_events();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_order_is_an_error_the_model_sees() {
        let (session, llm) = session_with(vec![
            FakeLlmResponse::tool_call("lookup_order", r#"{"order_id":"42"}"#, TTFT),
            FakeLlmResponse::text(
                "I could not find order 42. Could you check the number?",
                TTFT,
            ),
        ])
        .await;

        let result = session.run("What about order 42?").await.unwrap();

        let mut expect = result.expect();
        expect.next_event().is_function_call("lookup_order", None);
        let output = expect
            .next_event()
            .is_function_call_output(None, Some(true));
        assert!(output.output.contains("no order 42"), "{}", output.output);
        expect.next_event().is_message(ChatRole::Assistant);
        expect.no_more_events();
        // The follow-up request carried the error to the model.
        assert_eq!(llm.requests().len(), 2);
    }
}
