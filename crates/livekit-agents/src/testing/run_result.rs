//! [`RunResult`]: what the agent did for one user input, with fluent assertions.

use crate::llm::{
    AgentHandoff, ChatContext, ChatItem, ChatMessage, ChatRequest, ChatRole, FunctionCall,
    FunctionCallOutput, Llm, ToolChoice, ToolDefinition,
};

/// One thing the agent did.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// A message (usually the assistant's reply).
    Message(ChatMessage),
    /// A tool call.
    FunctionCall(FunctionCall),
    /// A tool output.
    FunctionCallOutput(FunctionCallOutput),
    /// An agent switch.
    AgentHandoff(AgentHandoff),
}

impl RunEvent {
    pub(crate) fn from_item(item: ChatItem) -> Self {
        match item {
            ChatItem::Message(m) => RunEvent::Message(m),
            ChatItem::FunctionCall(c) => RunEvent::FunctionCall(c),
            ChatItem::FunctionCallOutput(o) => RunEvent::FunctionCallOutput(o),
            ChatItem::AgentHandoff(h) => RunEvent::AgentHandoff(h),
        }
    }
}

/// The events of one [`AgentSession::run`](crate::voice::AgentSession::run), in order.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// The events.
    pub events: Vec<RunEvent>,
}

impl RunResult {
    /// Assertions over the events, from the first.
    pub fn expect(&self) -> RunAssert<'_> {
        RunAssert {
            events: &self.events,
            pos: 0,
        }
    }
}

/// A cursor over a [`RunResult`]'s events. Assertions panic with a description of the events
/// (they are meant for tests).
#[derive(Debug)]
pub struct RunAssert<'a> {
    events: &'a [RunEvent],
    pos: usize,
}

impl<'a> RunAssert<'a> {
    /// The next event.
    ///
    /// # Panics
    /// If there is none.
    pub fn next_event(&mut self) -> EventAssert<'a> {
        let Some(ev) = self.events.get(self.pos) else {
            panic!(
                "expected another event after #{}; events: {:#?}",
                self.pos, self.events
            );
        };
        self.pos += 1;
        EventAssert { event: ev }
    }

    /// Skips `n` events.
    pub fn skip_next(&mut self, n: usize) -> &mut Self {
        self.pos = (self.pos + n).min(self.events.len());
        self
    }

    /// Skips the next event if `pred` holds for it.
    pub fn skip_next_if(&mut self, pred: impl Fn(&RunEvent) -> bool) -> &mut Self {
        if self.events.get(self.pos).is_some_and(pred) {
            self.pos += 1;
        }
        self
    }

    /// # Panics
    /// If events remain.
    pub fn no_more_events(&self) {
        assert!(
            self.pos >= self.events.len(),
            "expected no more events, found: {:#?}",
            &self.events[self.pos..]
        );
    }

    /// The first function call named `name`, anywhere.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_function_call(&self, name: &str) -> EventAssert<'a> {
        self.find(
            |e| matches!(e, RunEvent::FunctionCall(c) if c.name == name),
            "a function call",
        )
    }

    /// The first message from `role`, anywhere.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_message(&self, role: ChatRole) -> EventAssert<'a> {
        self.find(
            |e| matches!(e, RunEvent::Message(m) if m.role == role),
            "a message",
        )
    }

    /// The first handoff, anywhere.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_agent_handoff(&self) -> EventAssert<'a> {
        self.find(
            |e| matches!(e, RunEvent::AgentHandoff(_)),
            "an agent handoff",
        )
    }

    fn find(&self, pred: impl Fn(&RunEvent) -> bool, what: &str) -> EventAssert<'a> {
        match self.events.iter().find(|e| pred(e)) {
            Some(event) => EventAssert { event },
            None => panic!("expected {what}; events: {:#?}", self.events),
        }
    }
}

/// Assertions on one event.
#[derive(Debug, Clone, Copy)]
pub struct EventAssert<'a> {
    event: &'a RunEvent,
}

impl<'a> EventAssert<'a> {
    /// The event.
    pub fn event(&self) -> &'a RunEvent {
        self.event
    }

    /// # Panics
    /// Unless it is a message from `role`.
    pub fn is_message(self, role: ChatRole) -> &'a ChatMessage {
        match self.event {
            RunEvent::Message(m) if m.role == role => m,
            other => panic!("expected a {role:?} message, got {other:#?}"),
        }
    }

    /// # Panics
    /// Unless it is a call of `name` whose arguments (if given) equal `arguments` as JSON.
    pub fn is_function_call(
        self,
        name: &str,
        arguments: Option<serde_json::Value>,
    ) -> &'a FunctionCall {
        match self.event {
            RunEvent::FunctionCall(c) if c.name == name => {
                if let Some(expected) = arguments {
                    let got: serde_json::Value =
                        serde_json::from_str(&c.arguments).unwrap_or(serde_json::Value::Null);
                    assert_eq!(got, expected, "arguments of {name}");
                }
                c
            }
            other => panic!("expected a call of {name}, got {other:#?}"),
        }
    }

    /// # Panics
    /// Unless it is a tool output (with this text and error flag, when given).
    pub fn is_function_call_output(
        self,
        output: Option<&str>,
        is_error: Option<bool>,
    ) -> &'a FunctionCallOutput {
        match self.event {
            RunEvent::FunctionCallOutput(o) => {
                if let Some(text) = output {
                    assert_eq!(o.output, text, "tool output");
                }
                if let Some(err) = is_error {
                    assert_eq!(o.is_error, err, "tool output is_error");
                }
                o
            }
            other => panic!("expected a tool output, got {other:#?}"),
        }
    }

    /// # Panics
    /// Unless it is a handoff to the agent with id `new_agent_id`.
    pub fn is_agent_handoff(self, new_agent_id: &str) -> &'a AgentHandoff {
        match self.event {
            RunEvent::AgentHandoff(h) if h.new_agent_id == new_agent_id => h,
            other => panic!("expected a handoff to {new_agent_id}, got {other:#?}"),
        }
    }
}

/// The judge could not confirm the intent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// The judge said the message does not meet the intent.
    #[error("the message does not meet the intent: {0}")]
    Failed(String),
    /// The judge did not answer with a verdict.
    #[error("the judge gave no verdict: {0}")]
    NoVerdict(String),
}

/// Asks `llm` whether `message` meets `intent` (it must call `check_intent(success, reason)`).
pub async fn judge(llm: &dyn Llm, message: &ChatMessage, intent: &str) -> Result<(), JudgeError> {
    let mut ctx = ChatContext::new();
    ctx.add_message(
        ChatRole::System,
        "You evaluate whether a message from a conversational agent meets an intent. \
         Call check_intent with success=true only if it clearly does, and give a short reason.",
    );
    ctx.add_message(
        ChatRole::User,
        format!(
            "Intent: {intent}\n\nMessage: {}",
            message.text_content().unwrap_or_default()
        ),
    );
    let mut request = ChatRequest::new(ctx);
    request.tools = vec![ToolDefinition {
        name: "check_intent".into(),
        description: "Report whether the message meets the intent.".into(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "success": {"type": "boolean"},
                "reason": {"type": "string"}
            },
            "required": ["success", "reason"]
        }),
    }];
    request.tool_choice = Some(ToolChoice::Required);
    request.options.temperature = Some(0.0);
    let response = llm
        .chat(request)
        .collect()
        .await
        .map_err(|e| JudgeError::NoVerdict(e.to_string()))?;
    let call = response
        .tool_calls
        .iter()
        .find(|c| c.name == "check_intent")
        .ok_or_else(|| JudgeError::NoVerdict(response.text.clone()))?;
    let args: serde_json::Value =
        serde_json::from_str(&call.arguments).map_err(|e| JudgeError::NoVerdict(e.to_string()))?;
    let reason = args
        .get("reason")
        .and_then(|r| r.as_str())
        .unwrap_or_default()
        .to_string();
    match args.get("success").and_then(|s| s.as_bool()) {
        Some(true) => Ok(()),
        Some(false) => Err(JudgeError::Failed(reason)),
        None => Err(JudgeError::NoVerdict(call.arguments.clone())),
    }
}
