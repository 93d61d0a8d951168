//! `#[function_tool]`: a documented async fn becomes a `FunctionTool`; `?` works on any error.

use livekit_agents::llm::{
    function_tool, FunctionCall, RunContext, ToolError, ToolOutput, INTERNAL_ERROR_MESSAGE,
};
use serde_json::json;

/// Look up the current weather for a city.
///
/// Only for today and the next few days.
///
/// # Arguments
///
/// * `location` - The city to look up.
/// * `days` - How many days of forecast,
///   counting today.
#[function_tool]
async fn lookup_weather(
    ctx: RunContext,
    location: String,
    days: Option<u8>,
) -> Result<String, ToolError> {
    if location.is_empty() {
        return Err(ToolError::new("which city?"));
    }
    Ok(format!(
        "{}: sunny in {location} for {} day(s)",
        ctx.function_call.call_id,
        days.unwrap_or(1)
    ))
}

/// Count the guests of a booking.
///
/// Args:
///     guests: The number of guests, as the caller said it.
#[function_tool(name = "count_guests")]
async fn guests(guests: String) -> Result<u32, std::num::ParseIntError> {
    // `?` on a foreign error: the model sees a generic message, the log has the real one.
    let n: u32 = guests.trim().parse()?;
    Ok(n)
}

/// End the call.
#[function_tool(description = "Hang up the phone.")]
async fn hang_up() {}

/// Say hello.
#[function_tool]
async fn hello(name: String) -> String {
    format!("hello {name}")
}

fn ctx(name: &str, args: &str) -> RunContext {
    RunContext::detached(FunctionCall::new("call_7", name, args))
}

async fn run(
    tool: &livekit_agents::llm::FunctionTool,
    args: &str,
) -> Result<ToolOutput, ToolError> {
    tool.call(ctx(tool.name(), args), args).await
}

fn value(out: Result<ToolOutput, ToolError>) -> serde_json::Value {
    match out {
        Ok(ToolOutput::Value(v)) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn definition_comes_from_the_doc_comment_and_signature() {
    let tool = lookup_weather();
    let def = tool.definition();
    def.validate().unwrap();
    assert_eq!(def.name, "lookup_weather");
    assert_eq!(
        def.description,
        "Look up the current weather for a city.\n\nOnly for today and the next few days."
    );
    let p = &def.parameters;
    assert_eq!(p["type"], "object");
    assert_eq!(p["required"], json!(["location"]));
    assert_eq!(
        p["properties"]["location"]["description"],
        "The city to look up."
    );
    assert_eq!(
        p["properties"]["days"]["description"],
        "How many days of forecast, counting today."
    );
    // The context is not part of the schema.
    assert!(p["properties"].get("ctx").is_none());
}

#[test]
fn options_override_name_and_description() {
    let tool = guests();
    assert_eq!(tool.name(), "count_guests");
    assert_eq!(
        tool.definition().description,
        "Count the guests of a booking."
    );
    assert_eq!(
        tool.definition().parameters["properties"]["guests"]["description"],
        "The number of guests, as the caller said it."
    );
    let tool = hang_up();
    assert_eq!(tool.definition().description, "Hang up the phone.");
    assert_eq!(tool.definition().parameters["properties"], json!({}));
}

#[tokio::test]
async fn calls_reach_the_function_with_typed_arguments() {
    let tool = lookup_weather();
    assert_eq!(
        value(run(&tool, r#"{"location": "Oslo", "days": 2}"#).await),
        json!("call_7: sunny in Oslo for 2 day(s)")
    );
    assert_eq!(
        value(run(&tool, r#"{"location": "Oslo", "days": null}"#).await),
        json!("call_7: sunny in Oslo for 1 day(s)")
    );
    assert_eq!(
        value(run(&hello(), r#"{"name": "Ada"}"#).await),
        json!("hello Ada")
    );
    assert!(matches!(run(&hang_up(), "").await, Ok(ToolOutput::None)));
}

#[tokio::test]
async fn errors_reach_the_model_as_the_reference_words_them() {
    // A ToolError made for the model: its message.
    let err = run(&lookup_weather(), r#"{"location": ""}"#)
        .await
        .unwrap_err();
    assert_eq!(err.message(), "which city?");
    assert!(!err.is_internal());

    // Any other error through `?`: the generic message; the real one is kept for the log.
    let err = run(&guests(), r#"{"guests": "a dozen"}"#)
        .await
        .unwrap_err();
    assert_eq!(err.message(), INTERNAL_ERROR_MESSAGE);
    assert!(err.is_internal());
    assert!(err
        .source_error()
        .unwrap()
        .to_string()
        .contains("invalid digit"));
    assert_eq!(
        value(run(&guests(), r#"{"guests": " 4 "}"#).await),
        json!(4)
    );

    // Wrong arguments are still the model's to fix.
    let err = run(&lookup_weather(), r#"{"days": 1}"#).await.unwrap_err();
    assert!(err.message().contains("location"), "{err}");
    assert!(!err.is_internal());
}
