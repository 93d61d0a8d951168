//! LiveKit Inference LLM: OpenAI Chat Completions (streamed) at the gateway.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::{Descriptor, Gateway, GatewayOptions, InferenceError};
use crate::llm::{
    ChatChunk, ChatContent, ChatContext, ChatItem, ChatRequest, ChatRole, ChoiceDelta, ChunkSender,
    CompletionUsage, FunctionToolCall, ImageSource, LlmStream, LlmStreamTask,
};
use crate::plugin_support::Provider;
use crate::types::ApiError;

const GATEWAY: Provider = Provider::new("LiveKit Inference", "x-livekit-request-id");
/// Largest SSE line kept (a line beyond this is a protocol error, not unbounded memory).
const MAX_LINE: usize = 1 << 20;

/// Options of [`Llm`].
#[derive(Debug, Clone)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct LlmOptions {
    /// `provider/model`, e.g. `openai/gpt-4.1-mini`.
    pub model: String,
    /// Pins the upstream provider (`X-LiveKit-Inference-Provider`).
    pub provider: Option<String>,
    /// Gateway URL and credentials.
    pub gateway: GatewayOptions,
    /// Extra fields merged into every request body (the reference's `extra_kwargs`).
    pub extra: Map<String, Value>,
}

impl LlmOptions {
    /// Options for `model` with everything else default.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            provider: None,
            gateway: GatewayOptions::default(),
            extra: Map::new(),
        }
    }
}

/// A LiveKit Inference LLM.
pub struct Llm {
    opts: LlmOptions,
    gateway: Gateway,
    client: reqwest::Client,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("inference::Llm")
            .field("model", &self.opts.model)
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// An LLM with these options (credentials resolved now).
    pub fn new(opts: LlmOptions) -> Result<Self, InferenceError> {
        Descriptor::llm(&opts.model)?;
        let gateway = Gateway::resolve(&opts.gateway)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| InferenceError::InvalidUrl { url: e.to_string() })?;
        Ok(Self {
            opts,
            gateway,
            client,
        })
    }

    /// An LLM from a descriptor (`openai/gpt-4.1-mini`), credentials from the environment.
    pub fn from_descriptor(descriptor: &str) -> Result<Self, InferenceError> {
        Self::new(LlmOptions::new(Descriptor::llm(descriptor)?.model))
    }
}

#[async_trait]
impl crate::llm::Llm for Llm {
    fn label(&self) -> String {
        "livekit.inference.LLM".into()
    }
    fn model(&self) -> String {
        self.opts.model.clone()
    }
    fn provider(&self) -> String {
        "livekit".into()
    }
    fn chat(&self, request: ChatRequest) -> LlmStream {
        let conn = request.conn;
        let task = ChatTask {
            body: request_body(&self.opts, &request),
            url: self.gateway.endpoint("chat/completions", false),
            gateway: self.gateway.clone(),
            provider: self.opts.provider.clone(),
            client: self.client.clone(),
            timeout: conn.timeout,
        };
        LlmStream::spawn(self.label(), conn, task)
    }
}

/// The request body (without `model`-independent headers).
pub(crate) fn request_body(opts: &LlmOptions, request: &ChatRequest) -> Value {
    let mut body = json!({
        "model": opts.model,
        "messages": to_messages(&request.chat_ctx),
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let model_name = opts.model.rsplit('/').next().unwrap_or_default();
    let reasoning = ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| model_name.starts_with(p));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                // Strict schemas as the reference sends them; a schema that cannot be made
                // strict goes as it is.
                let (params, strict) = match t.to_strict() {
                    Ok(s) => (s.parameters, true),
                    Err(_) => (t.parameters.clone(), false),
                };
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description,
                    "parameters": params, "strict": strict}})
            })
            .collect();
        body["tools"] = Value::Array(tools);
        if let Some(choice) = &request.tool_choice {
            body["tool_choice"] = serde_json::to_value(choice).unwrap_or(Value::Null);
        }
        if let Some(p) = request.options.parallel_tool_calls {
            body["parallel_tool_calls"] = json!(p);
        }
    }
    if let Some(t) = request.options.temperature {
        if !reasoning {
            body["temperature"] = json!(t);
        }
    }
    if let Some(m) = request.options.max_tokens {
        body["max_completion_tokens"] = json!(m);
    }
    if let Some(e) = request.options.reasoning_effort {
        body["reasoning_effort"] = serde_json::to_value(e).unwrap_or(Value::Null);
    }
    if let Some(obj) = body.as_object_mut() {
        for (k, v) in opts.extra.iter().chain(request.options.extra.iter()) {
            obj.insert(k.clone(), v.clone());
        }
    }
    body
}

fn role_name(role: ChatRole) -> &'static str {
    match role {
        ChatRole::Developer => "developer",
        ChatRole::System => "system",
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

/// The chat context as Chat Completions `messages`: calls grouped into one assistant message,
/// each output right after its group, unmatched calls/outputs and handoffs left out, images as
/// `image_url` parts of user messages.
pub(crate) fn to_messages(ctx: &ChatContext) -> Vec<Value> {
    let items = ctx.items();
    let outputs: BTreeMap<&str, &crate::llm::FunctionCallOutput> = items
        .iter()
        .filter_map(|i| match i {
            ChatItem::FunctionCallOutput(o) => Some((o.call_id.as_str(), o)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            ChatItem::Message(m) => {
                let has_image = m.content.iter().any(|c| matches!(c, ChatContent::Image(_)));
                let content = if has_image && m.role == ChatRole::User {
                    Value::Array(
                        m.content
                            .iter()
                            .map(|c| match c {
                                ChatContent::Text { text } => json!({"type": "text", "text": text}),
                                ChatContent::Audio { transcript } => {
                                    json!({"type": "text", "text": transcript})
                                }
                                ChatContent::Image(img) => {
                                    let url = match &img.image {
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
                                    };
                                    let mut image_url = json!({"url": url});
                                    if !img.inference_detail.is_empty() {
                                        image_url["detail"] = json!(img.inference_detail);
                                    }
                                    json!({"type": "image_url", "image_url": image_url})
                                }
                            })
                            .collect(),
                    )
                } else {
                    Value::String(m.text_content().unwrap_or_default())
                };
                out.push(json!({"role": role_name(m.role), "content": content}));
                i += 1;
            }
            ChatItem::FunctionCall(_) => {
                let mut calls = Vec::new();
                let mut answered = Vec::new();
                while let Some(ChatItem::FunctionCall(c)) = items.get(i) {
                    if let Some(o) = outputs.get(c.call_id.as_str()) {
                        calls.push(json!({"id": c.call_id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}}));
                        answered.push(*o);
                    }
                    i += 1;
                }
                if !calls.is_empty() {
                    out.push(json!({"role": "assistant", "tool_calls": calls}));
                    for o in answered {
                        out.push(
                            json!({"role": "tool", "tool_call_id": o.call_id, "content": o.output}),
                        );
                    }
                }
            }
            _ => i += 1,
        }
    }
    out
}

struct ChatTask {
    body: Value,
    url: url::Url,
    gateway: Gateway,
    provider: Option<String>,
    client: reqwest::Client,
    timeout: Duration,
}

#[async_trait]
impl LlmStreamTask for ChatTask {
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError> {
        let mut request = self.client.post(self.url.clone()).json(&self.body);
        for (name, value) in self.gateway.headers()? {
            request = request.header(name, value);
        }
        if let Some(p) = &self.provider {
            request = request.header("X-LiveKit-Inference-Provider", p.as_str());
        }
        let response = GATEWAY.send_http(request, self.timeout).await?;
        let response = GATEWAY.check_status(response).await?;
        let mut body = response.bytes_stream();
        let mut parser = SseParser::default();
        let mut calls = ToolCallAssembler::default();
        loop {
            let chunk = tokio::time::timeout(self.timeout, body.next())
                .await
                .map_err(|_| ApiError::Timeout(self.timeout))?;
            let Some(chunk) = chunk else {
                break;
            };
            let chunk = chunk.map_err(|e| {
                ApiError::connection(format!(
                    "LiveKit Inference stream broke: {}",
                    e.without_url()
                ))
            })?;
            for data in parser.push(&chunk)? {
                if data == "[DONE]" {
                    return flush_calls(&mut calls, out).await;
                }
                let v: Value = serde_json::from_str(&data).map_err(|e| {
                    ApiError::other(format!("LiveKit Inference sent an invalid chunk: {e}"))
                })?;
                if !handle_chunk(&v, &mut calls, out).await {
                    return Ok(());
                }
            }
        }
        flush_calls(&mut calls, out).await
    }
}

async fn flush_calls(calls: &mut ToolCallAssembler, out: &ChunkSender) -> Result<(), ApiError> {
    let done = calls.finish();
    if !done.is_empty() {
        out.send(ChatChunk::tool_calls(calls.id.clone(), done))
            .await;
    }
    Ok(())
}

/// Handles one `chat.completion.chunk`; `false` once the consumer is gone.
async fn handle_chunk(v: &Value, calls: &mut ToolCallAssembler, out: &ChunkSender) -> bool {
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    calls.id.clone_from(&id);
    if let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) {
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str() {
            if !text.is_empty() && !out.send(ChatChunk::text(id.clone(), text)).await {
                return false;
            }
        }
        if let Some(tcs) = delta["tool_calls"].as_array() {
            for tc in tcs {
                calls.push(tc);
            }
        }
        if choice["finish_reason"].is_string() {
            let done = calls.finish();
            if !done.is_empty() && !out.send(ChatChunk::tool_calls(id.clone(), done)).await {
                return false;
            }
        }
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |x: &Value| x.as_u64().unwrap_or(0).min(u32::MAX as u64) as u32;
        let usage = CompletionUsage {
            completion_tokens: n(&u["completion_tokens"]),
            prompt_tokens: n(&u["prompt_tokens"]),
            prompt_cached_tokens: n(&u["prompt_tokens_details"]["cached_tokens"]),
            total_tokens: n(&u["total_tokens"]),
        };
        let chunk = ChatChunk {
            id,
            delta: None::<ChoiceDelta>,
            usage: Some(usage),
        };
        if !out.send(chunk).await {
            return false;
        }
    }
    true
}

/// Stitches streamed tool-call fragments (by `index`).
#[derive(Default)]
struct ToolCallAssembler {
    id: String,
    calls: BTreeMap<u64, FunctionToolCall>,
    seen_ids: HashSet<String>,
}

impl ToolCallAssembler {
    fn push(&mut self, tc: &Value) {
        let index = tc["index"].as_u64().unwrap_or(0);
        // Bounded: at most 128 parallel calls per response.
        if !self.calls.contains_key(&index) && self.calls.len() >= 128 {
            return;
        }
        let call = self.calls.entry(index).or_default();
        if let Some(id) = tc["id"].as_str() {
            call.call_id = id.to_owned();
        }
        if let Some(name) = tc["function"]["name"].as_str() {
            call.name.push_str(name);
        }
        if let Some(args) = tc["function"]["arguments"].as_str() {
            if call.arguments.len() + args.len() <= MAX_LINE {
                call.arguments.push_str(args);
            }
        }
    }

    fn finish(&mut self) -> Vec<FunctionToolCall> {
        let calls = std::mem::take(&mut self.calls);
        calls
            .into_values()
            .filter(|c| !c.name.is_empty() && self.seen_ids.insert(c.call_id.clone()))
            .collect()
    }
}

/// Server-sent events: `data:` payloads, line by line, with a bounded line buffer.
#[derive(Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    data: String,
}

impl SseParser {
    /// Feeds bytes; returns the complete events' data.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, ApiError> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_LINE {
                    return Err(ApiError::other(
                        "LiveKit Inference sent an event line over 1 MiB",
                    ));
                }
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data));
                }
            } else if let Some(rest) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                if self.data.len() + rest.len() > MAX_LINE {
                    return Err(ApiError::other(
                        "LiveKit Inference sent an event over 1 MiB",
                    ));
                }
                self.data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{FunctionCall, FunctionCallOutput, ToolChoice, ToolDefinition};

    #[test]
    fn sse_parser_splits_events_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").unwrap().is_empty());
        let ev = p.push(b":1}\n\ndata: [DONE]\r\n\r\n").unwrap();
        assert_eq!(ev, vec!["{\"a\":1}".to_string(), "[DONE]".to_string()]);
        let huge = vec![b'x'; MAX_LINE + 1];
        assert!(p.push(&huge).is_err());
    }

    #[test]
    fn messages_group_calls_and_drop_unmatched() {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::System, "sys");
        ctx.add_message(ChatRole::User, "hi");
        let call = FunctionCall::new("c1", "f", "{}");
        ctx.push(call.clone());
        ctx.push(FunctionCall::new("c2", "g", "{}"));
        ctx.push(FunctionCallOutput::for_call(&call, "out", false));
        let m = to_messages(&ctx);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 1);
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(m[3]["content"], "out");
    }

    #[test]
    fn body_has_model_stream_usage_and_strict_tools() {
        let mut req = ChatRequest::new(ChatContext::new());
        req.tools = vec![ToolDefinition {
            name: "f".into(),
            description: "d".into(),
            parameters: json!({"type": "object", "properties": {"a": {"type": "string"}},
                               "required": ["a"]}),
        }];
        req.tool_choice = Some(ToolChoice::Required);
        req.options.temperature = Some(0.5);
        let mut opts = LlmOptions::new("openai/gpt-5-mini");
        opts.extra.insert("seed".into(), json!(7));
        let b = request_body(&opts, &req);
        assert_eq!(b["model"], "openai/gpt-5-mini");
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["tools"][0]["function"]["strict"], true);
        assert_eq!(b["tool_choice"], "required");
        assert!(
            b.get("temperature").is_none(),
            "reasoning models take no temperature"
        );
        assert_eq!(b["seed"], 7);
    }
}
