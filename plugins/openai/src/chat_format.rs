//! The chat context in the Chat Completions wire format (`messages`), and tool definitions in
//! the `tools` format.
//!
//! Conversion rules (matching the reference's `to_provider_format("openai")`):
//! - system, developer, user and assistant messages keep their role; text parts and audio
//!   transcripts become text, images become `image_url` parts (URLs and data URLs as given,
//!   bytes as a `data:` URL) with their detail hint;
//! - function calls are grouped into one assistant message with `tool_calls` (an assistant
//!   text message right before them becomes that message's `content`), and each call's output
//!   follows as a `tool` message, right after the group, as the API requires;
//! - calls without an output and outputs without a call are dropped (the API rejects both);
//! - agent handoff items are skipped.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use livekit_agents::llm::{
    ChatContent, ChatContext, ChatItem, ChatMessage, ChatRole, FunctionCall, ImageContent,
    ImageSource, ToolDefinition,
};
use serde_json::{json, Value};

/// The role's wire name.
pub(crate) fn role_name(role: ChatRole) -> &'static str {
    match role {
        ChatRole::Developer => "developer",
        ChatRole::System => "system",
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

/// An image as the URL the API accepts (http(s) URL or `data:` URL).
pub(crate) fn image_url(image: &ImageContent) -> String {
    match &image.image {
        ImageSource::Url { url } => url.clone(),
        ImageSource::Bytes { data, mime_type } => format!(
            "data:{};base64,{}",
            if mime_type.is_empty() {
                "image/jpeg"
            } else {
                mime_type
            },
            base64::engine::general_purpose::STANDARD.encode(data)
        ),
    }
}

fn message_content(msg: &ChatMessage) -> Value {
    let has_image = msg
        .content
        .iter()
        .any(|c| matches!(c, ChatContent::Image(_)));
    // Only user messages may carry images; the plain-string form is the most widely supported
    // by OpenAI-compatible servers, so use it whenever there is no image.
    if !has_image || msg.role != ChatRole::User {
        return Value::String(msg.text_content().unwrap_or_default());
    }
    let parts: Vec<Value> = msg
        .content
        .iter()
        .map(|c| match c {
            ChatContent::Text { text } => json!({"type": "text", "text": text}),
            ChatContent::Audio { transcript } => json!({"type": "text", "text": transcript}),
            ChatContent::Image(img) => {
                let mut image_url = json!({"url": image_url(img)});
                if !img.inference_detail.is_empty() {
                    image_url["detail"] = json!(img.inference_detail);
                }
                json!({"type": "image_url", "image_url": image_url})
            }
        })
        .collect();
    Value::Array(parts)
}

fn tool_call(call: &FunctionCall) -> Value {
    json!({
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    })
}

/// The `messages` array for a chat context.
pub(crate) fn to_messages(ctx: &ChatContext) -> Vec<Value> {
    let items = ctx.items();
    let called: HashSet<&str> = items
        .iter()
        .filter_map(|it| match it {
            ChatItem::FunctionCall(c) => Some(c.call_id.as_str()),
            _ => None,
        })
        .collect();
    let mut outputs: HashMap<&str, &livekit_agents::llm::FunctionCallOutput> = HashMap::new();
    for it in items {
        if let ChatItem::FunctionCallOutput(o) = it {
            if called.contains(o.call_id.as_str()) {
                outputs.entry(o.call_id.as_str()).or_insert(o);
            } else {
                tracing::debug!(call_id = %o.call_id, "dropping a tool output without its call");
            }
        }
    }

    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            ChatItem::Message(m) => {
                // An assistant message directly followed by calls is the text of the same turn.
                let next_is_call = matches!(items.get(i + 1), Some(ChatItem::FunctionCall(_)));
                if m.role == ChatRole::Assistant && next_is_call {
                    i = push_call_group(items, i + 1, Some(m), &outputs, &mut out);
                    continue;
                }
                out.push(json!({"role": role_name(m.role), "content": message_content(m)}));
                i += 1;
            }
            ChatItem::FunctionCall(_) => {
                i = push_call_group(items, i, None, &outputs, &mut out);
            }
            // Outputs are placed after their call group; handoffs are not shown to the model.
            ChatItem::FunctionCallOutput(_) | ChatItem::AgentHandoff(_) => i += 1,
        }
    }
    out
}

/// Pushes the assistant message for the calls starting at `start` (consecutive calls, possibly
/// separated by their own outputs) followed by their outputs; returns the next index.
fn push_call_group(
    items: &[ChatItem],
    start: usize,
    text: Option<&ChatMessage>,
    outputs: &HashMap<&str, &livekit_agents::llm::FunctionCallOutput>,
    out: &mut Vec<Value>,
) -> usize {
    let mut calls = Vec::new();
    let mut i = start;
    while let Some(item) = items.get(i) {
        match item {
            ChatItem::FunctionCall(c) => calls.push(c),
            ChatItem::FunctionCallOutput(_) => {}
            _ => break,
        }
        i += 1;
    }
    let answered: Vec<&FunctionCall> = calls
        .into_iter()
        .filter(|c| {
            let ok = outputs.contains_key(c.call_id.as_str());
            if !ok {
                tracing::debug!(call_id = %c.call_id, "dropping a tool call without its output");
            }
            ok
        })
        .collect();
    let content = text.and_then(ChatMessage::text_content);
    if answered.is_empty() {
        if let Some(text) = content {
            out.push(json!({"role": "assistant", "content": text}));
        }
        return i;
    }
    let mut msg = json!({
        "role": "assistant",
        "tool_calls": answered.iter().map(|c| tool_call(c)).collect::<Vec<_>>(),
    });
    msg["content"] = content.map_or(Value::Null, Value::String);
    out.push(msg);
    for c in answered {
        if let Some(o) = outputs.get(c.call_id.as_str()) {
            out.push(json!({"role": "tool", "tool_call_id": o.call_id, "content": o.output}));
        }
    }
    i
}

/// The `tools` array. With `strict`, each tool whose schema can be made strict is sent with
/// `"strict": true` (see `ToolDefinition::to_strict`); the others are sent as they are.
pub(crate) fn to_tools(tools: &[ToolDefinition], strict: bool) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            let strict_def = if strict {
                match t.to_strict() {
                    Ok(def) => Some(def),
                    Err(e) => {
                        tracing::debug!(tool = %t.name, error = %e, "tool sent without strict mode");
                        None
                    }
                }
            } else {
                None
            };
            let mut function = json!({"name": t.name, "description": t.description});
            match strict_def {
                Some(def) => {
                    function["parameters"] = def.parameters;
                    function["strict"] = json!(true);
                }
                None => function["parameters"] = t.parameters.clone(),
            }
            json!({"type": "function", "function": function})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_agents::llm::{AgentHandoff, FunctionCallOutput};

    #[test]
    fn every_item_kind_is_converted() {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::System, "be brief");
        ctx.add_message(ChatRole::Developer, "dev note");
        ctx.push(ChatMessage::with_content(
            ChatRole::User,
            vec![
                ChatContent::Text {
                    text: "what is this?".into(),
                },
                ChatContent::Image(ImageContent {
                    id: "img".into(),
                    image: ImageSource::Bytes {
                        data: vec![1, 2, 3],
                        mime_type: "image/png".into(),
                    },
                    inference_detail: "low".into(),
                }),
                ChatContent::Image(ImageContent {
                    id: "img2".into(),
                    image: ImageSource::Url {
                        url: "https://x/y.jpg".into(),
                    },
                    inference_detail: String::new(),
                }),
            ],
        ));
        ctx.add_message(ChatRole::Assistant, "let me check");
        let a = FunctionCall::new("call_a", "weather", r#"{"city":"Paris"}"#);
        let b = FunctionCall::new("call_b", "time", "{}");
        ctx.push(a.clone());
        ctx.push(b.clone());
        ctx.push(FunctionCallOutput::for_call(&a, "sunny", false));
        ctx.push(AgentHandoff::new(None, "agent2"));
        ctx.push(FunctionCallOutput::for_call(&b, "noon", false));
        // An orphan output and a call without output are dropped.
        ctx.push(FunctionCallOutput::new("ghost", "x", "?", false));
        ctx.push(FunctionCall::new("call_c", "pending", "{}"));
        ctx.push(ChatMessage::with_content(
            ChatRole::User,
            vec![ChatContent::Audio {
                transcript: "thanks".into(),
            }],
        ));

        let msgs = to_messages(&ctx);
        assert_eq!(
            msgs,
            vec![
                json!({"role": "system", "content": "be brief"}),
                json!({"role": "developer", "content": "dev note"}),
                json!({"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AQID", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
                ]}),
                json!({"role": "assistant", "content": "let me check", "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
                ]}),
                json!({"role": "tool", "tool_call_id": "call_a", "content": "sunny"}),
                json!({"role": "tool", "tool_call_id": "call_b", "content": "noon"}),
                json!({"role": "user", "content": "thanks"}),
            ]
        );
    }

    #[test]
    fn outputs_follow_their_calls_even_when_interleaved() {
        let mut ctx = ChatContext::new();
        let a = FunctionCall::new("a", "f", "{}");
        ctx.push(a.clone());
        ctx.add_message(ChatRole::User, "hurry");
        ctx.push(FunctionCallOutput::for_call(&a, "done", true));
        let msgs = to_messages(&ctx);
        assert_eq!(msgs[0]["tool_calls"][0]["id"], "a");
        assert_eq!(msgs[0]["content"], Value::Null);
        assert_eq!(
            msgs[1],
            json!({"role": "tool", "tool_call_id": "a", "content": "done"})
        );
        assert_eq!(msgs[2], json!({"role": "user", "content": "hurry"}));
    }

    #[test]
    fn tools_are_strict_where_the_schema_allows() {
        let ok = ToolDefinition {
            name: "weather".into(),
            description: "Weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        };
        let open = ToolDefinition {
            name: "free".into(),
            description: "Free-form".into(),
            parameters: json!({"type": "object", "properties": {}, "additionalProperties": true}),
        };
        let tools = to_tools(&[ok.clone(), open.clone()], true);
        assert_eq!(tools[0]["function"]["strict"], json!(true));
        assert_eq!(
            tools[0]["function"]["parameters"]["additionalProperties"],
            json!(false)
        );
        assert!(tools[1]["function"].get("strict").is_none());
        assert_eq!(tools[1]["function"]["parameters"], open.parameters);
        let loose = to_tools(std::slice::from_ref(&ok), false);
        assert_eq!(loose[0]["function"]["parameters"], ok.parameters);
        assert_eq!(loose[0]["type"], "function");
    }
}
