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
    ///
    /// ```
    /// use livekit_agents::llm::{ChatMessage, ChatRole, FunctionCall};
    /// use livekit_agents::testing::{RunEvent, RunResult};
    ///
    /// let result = RunResult {
    ///     events: vec![
    ///         RunEvent::FunctionCall(FunctionCall::new("c1", "lookup_weather", r#"{"city":"Paris"}"#)),
    ///         RunEvent::Message(ChatMessage::new(ChatRole::Assistant, "Sunny.")),
    ///     ],
    /// };
    /// // By index (as the reference's `result.expect[0]`), from the end, by range:
    /// result.expect()[0].is_function_call("lookup_weather", None);
    /// result.expect().nth(-1).is_message(ChatRole::Assistant);
    /// result.expect().range(..).contains_message(ChatRole::Assistant);
    /// // In order, typed: skips to the next message and returns its assertion.
    /// let mut expect = result.expect();
    /// let msg = expect.next_message();
    /// assert_eq!(msg.text_content().as_deref(), Some("Sunny."));
    /// expect.no_more_events();
    /// ```
    pub fn expect(&self) -> RunAssert<'_> {
        RunAssert {
            events: &self.events,
            pos: 0,
        }
    }
}

/// The kind of a [`RunEvent`] (the reference's `type=` of `next_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEventType {
    /// [`RunEvent::Message`].
    Message,
    /// [`RunEvent::FunctionCall`].
    FunctionCall,
    /// [`RunEvent::FunctionCallOutput`].
    FunctionCallOutput,
    /// [`RunEvent::AgentHandoff`].
    AgentHandoff,
}

impl RunEvent {
    /// The event's kind.
    pub fn event_type(&self) -> RunEventType {
        match self {
            RunEvent::Message(_) => RunEventType::Message,
            RunEvent::FunctionCall(_) => RunEventType::FunctionCall,
            RunEvent::FunctionCallOutput(_) => RunEventType::FunctionCallOutput,
            RunEvent::AgentHandoff(_) => RunEventType::AgentHandoff,
        }
    }

    /// Assertions on this event (what `result.expect()[i]` gives).
    pub fn assert(&self) -> EventAssert<'_> {
        EventAssert { event: self }
    }

    /// # Panics
    /// Unless it is a message from `role` (see [`EventAssert::is_message`]).
    pub fn is_message(&self, role: ChatRole) -> ChatMessageAssert<'_> {
        self.assert().is_message(role)
    }

    /// # Panics
    /// Unless it is this call (see [`EventAssert::is_function_call`]).
    pub fn is_function_call(
        &self,
        name: &str,
        arguments: Option<serde_json::Value>,
    ) -> FunctionCallAssert<'_> {
        self.assert().is_function_call(name, arguments)
    }

    /// # Panics
    /// Unless it is such an output (see [`EventAssert::is_function_call_output`]).
    pub fn is_function_call_output(
        &self,
        output: Option<&str>,
        is_error: Option<bool>,
    ) -> FunctionCallOutputAssert<'_> {
        self.assert().is_function_call_output(output, is_error)
    }

    /// # Panics
    /// Unless it is a handoff to `new_agent_id` (see [`EventAssert::is_agent_handoff`]).
    pub fn is_agent_handoff(&self, new_agent_id: &str) -> AgentHandoffAssert<'_> {
        self.assert().is_agent_handoff(new_agent_id)
    }
}

/// A cursor over a [`RunResult`]'s events. Assertions panic with a description of the events
/// (they are meant for tests).
///
/// `expect[i]` is the `i`-th event (as the reference's `result.expect[i]`; call the assertion in
/// the same expression: the event borrows the cursor). [`nth`](Self::nth) also counts from the
/// end (`nth(-1)` is the last event) and [`range`](Self::range) asserts over a span.
#[derive(Debug)]
pub struct RunAssert<'a> {
    events: &'a [RunEvent],
    pos: usize,
}

impl std::ops::Index<usize> for RunAssert<'_> {
    type Output = RunEvent;

    /// # Panics
    /// If there is no such event.
    fn index(&self, index: usize) -> &RunEvent {
        match self.events.get(index) {
            Some(e) => e,
            None => panic!(
                "event #{index} out of range (total events: {}); events: {:#?}",
                self.events.len(),
                self.events
            ),
        }
    }
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

    /// The next event of kind `kind`, skipping others (the reference's
    /// `next_event(type=…)`).
    ///
    /// # Panics
    /// If no event of that kind remains.
    pub fn next_event_of(&mut self, kind: RunEventType) -> EventAssert<'a> {
        loop {
            let ev = self.next_event();
            if ev.event.event_type() == kind {
                return ev;
            }
        }
    }

    /// The next message, skipping other events (`next_event(type="message")`).
    ///
    /// # Panics
    /// If no message remains.
    pub fn next_message(&mut self) -> ChatMessageAssert<'a> {
        match self.next_event_of(RunEventType::Message).event {
            RunEvent::Message(m) => ChatMessageAssert { message: m },
            _ => unreachable!("next_event_of returned another kind"),
        }
    }

    /// The next function call, skipping other events.
    ///
    /// # Panics
    /// If no function call remains.
    pub fn next_function_call(&mut self) -> FunctionCallAssert<'a> {
        match self.next_event_of(RunEventType::FunctionCall).event {
            RunEvent::FunctionCall(c) => FunctionCallAssert { call: c },
            _ => unreachable!("next_event_of returned another kind"),
        }
    }

    /// The next tool output, skipping other events.
    ///
    /// # Panics
    /// If no tool output remains.
    pub fn next_function_call_output(&mut self) -> FunctionCallOutputAssert<'a> {
        match self.next_event_of(RunEventType::FunctionCallOutput).event {
            RunEvent::FunctionCallOutput(o) => FunctionCallOutputAssert { output: o },
            _ => unreachable!("next_event_of returned another kind"),
        }
    }

    /// The next handoff, skipping other events.
    ///
    /// # Panics
    /// If no handoff remains.
    pub fn next_agent_handoff(&mut self) -> AgentHandoffAssert<'a> {
        match self.next_event_of(RunEventType::AgentHandoff).event {
            RunEvent::AgentHandoff(h) => AgentHandoffAssert { handoff: h },
            _ => unreachable!("next_event_of returned another kind"),
        }
    }

    /// The event at `index`; a negative index counts from the end (`-1` is the last). Does
    /// not move the cursor.
    ///
    /// # Panics
    /// If there is no such event.
    pub fn nth(&self, index: isize) -> EventAssert<'a> {
        let len = self.events.len();
        let resolved = if index < 0 {
            len.checked_sub(index.unsigned_abs())
        } else {
            Some(index.unsigned_abs())
        };
        match resolved.and_then(|i| self.events.get(i)) {
            Some(event) => EventAssert { event },
            None => panic!(
                "nth({index}) out of range (total events: {len}); events: {:#?}",
                self.events
            ),
        }
    }

    /// Assertions over the events in `range` (the reference's `expect[a:b]`; `..` is all).
    /// A range past the end is cut to the events there are.
    pub fn range(&self, range: impl std::ops::RangeBounds<usize>) -> EventRangeAssert<'a> {
        use std::ops::Bound;
        let len = self.events.len();
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .min(len);
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => len,
        }
        .clamp(start, len);
        EventRangeAssert {
            events: &self.events[start..end],
        }
    }

    /// Skips `n` events.
    ///
    /// # Panics
    /// If fewer than `n` events remain (as the reference's `skip_next`).
    pub fn skip_next(&mut self, n: usize) -> &mut Self {
        let left = self.events.len().saturating_sub(self.pos);
        assert!(
            n <= left,
            "tried to skip {n} event(s), but only {left} were available; events: {:#?}",
            self.events
        );
        self.pos += n;
        self
    }

    /// Skips the next event if `pred` holds for it.
    pub fn skip_next_if(&mut self, pred: impl Fn(&RunEvent) -> bool) -> &mut Self {
        if self.events.get(self.pos).is_some_and(pred) {
            self.pos += 1;
        }
        self
    }

    /// Skips the next event if it is a message from `role`, returning it (the reference's
    /// `skip_next_event_if(type="message", role=…)`).
    pub fn skip_next_message_if(&mut self, role: ChatRole) -> Option<ChatMessageAssert<'a>> {
        match self.events.get(self.pos) {
            Some(RunEvent::Message(m)) if m.role == role => {
                self.pos += 1;
                Some(ChatMessageAssert { message: m })
            }
            _ => None,
        }
    }

    /// Skips the next event if it is a call of `name`, returning it.
    pub fn skip_next_function_call_if(&mut self, name: &str) -> Option<FunctionCallAssert<'a>> {
        match self.events.get(self.pos) {
            Some(RunEvent::FunctionCall(c)) if c.name == name => {
                self.pos += 1;
                Some(FunctionCallAssert { call: c })
            }
            _ => None,
        }
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
        self.range(..).contains_function_call(name)
    }

    /// The first message from `role`, anywhere.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_message(&self, role: ChatRole) -> EventAssert<'a> {
        self.range(..).contains_message(role)
    }

    /// The first tool output, anywhere.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_function_call_output(&self) -> EventAssert<'a> {
        self.range(..).contains_function_call_output()
    }

    /// The first handoff, anywhere.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_agent_handoff(&self) -> EventAssert<'a> {
        self.range(..).contains_agent_handoff()
    }
}

/// Assertions over a span of events ([`RunAssert::range`]).
#[derive(Debug, Clone, Copy)]
pub struct EventRangeAssert<'a> {
    events: &'a [RunEvent],
}

impl<'a> EventRangeAssert<'a> {
    /// The events of the span.
    pub fn events(&self) -> &'a [RunEvent] {
        self.events
    }

    fn find(&self, pred: impl Fn(&RunEvent) -> bool, what: &str) -> EventAssert<'a> {
        match self.events.iter().find(|e| pred(e)) {
            Some(event) => EventAssert { event },
            None => panic!("expected {what}; events: {:#?}", self.events),
        }
    }

    /// The first function call named `name` in the span (chain `is_function_call` for a
    /// typed assertion).
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_function_call(&self, name: &str) -> EventAssert<'a> {
        self.find(
            |e| matches!(e, RunEvent::FunctionCall(c) if c.name == name),
            &format!("a call of {name}"),
        )
    }

    /// The first message from `role` in the span.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_message(&self, role: ChatRole) -> EventAssert<'a> {
        self.find(
            |e| matches!(e, RunEvent::Message(m) if m.role == role),
            &format!("a {role:?} message"),
        )
    }

    /// The first tool output in the span.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_function_call_output(&self) -> EventAssert<'a> {
        self.find(
            |e| matches!(e, RunEvent::FunctionCallOutput(_)),
            "a tool output",
        )
    }

    /// The first handoff in the span.
    ///
    /// # Panics
    /// If there is none.
    pub fn contains_agent_handoff(&self) -> EventAssert<'a> {
        self.find(
            |e| matches!(e, RunEvent::AgentHandoff(_)),
            "an agent handoff",
        )
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
    pub fn is_message(self, role: ChatRole) -> ChatMessageAssert<'a> {
        match self.event {
            RunEvent::Message(m) if m.role == role => ChatMessageAssert { message: m },
            other => panic!("expected a {role:?} message, got {other:#?}"),
        }
    }

    /// # Panics
    /// Unless it is a call of `name` whose arguments (if given) equal `arguments` as JSON.
    pub fn is_function_call(
        self,
        name: &str,
        arguments: Option<serde_json::Value>,
    ) -> FunctionCallAssert<'a> {
        match self.event {
            RunEvent::FunctionCall(c) if c.name == name => {
                if let Some(expected) = arguments {
                    let got: serde_json::Value =
                        serde_json::from_str(&c.arguments).unwrap_or(serde_json::Value::Null);
                    assert_eq!(got, expected, "arguments of {name}");
                }
                FunctionCallAssert { call: c }
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
    ) -> FunctionCallOutputAssert<'a> {
        match self.event {
            RunEvent::FunctionCallOutput(o) => {
                if let Some(text) = output {
                    assert_eq!(o.output, text, "tool output");
                }
                if let Some(err) = is_error {
                    assert_eq!(o.is_error, err, "tool output is_error");
                }
                FunctionCallOutputAssert { output: o }
            }
            other => panic!("expected a tool output, got {other:#?}"),
        }
    }

    /// # Panics
    /// Unless it is a handoff to the agent with id `new_agent_id`.
    pub fn is_agent_handoff(self, new_agent_id: &str) -> AgentHandoffAssert<'a> {
        match self.event {
            RunEvent::AgentHandoff(h) if h.new_agent_id == new_agent_id => {
                AgentHandoffAssert { handoff: h }
            }
            other => panic!("expected a handoff to {new_agent_id}, got {other:#?}"),
        }
    }
}

/// A message that passed [`EventAssert::is_message`]; derefs to the [`ChatMessage`].
#[derive(Debug, Clone, Copy)]
pub struct ChatMessageAssert<'a> {
    message: &'a ChatMessage,
}

impl<'a> ChatMessageAssert<'a> {
    /// The message.
    pub fn event(&self) -> &'a ChatMessage {
        self.message
    }

    /// Asks `llm` whether the message meets `intent` (see [`judge`]).
    ///
    /// # Panics
    /// If the judge does not confirm it.
    pub async fn judge(self, llm: &dyn Llm, intent: &str) -> ChatMessageAssert<'a> {
        if let Err(e) = judge(llm, self.message, intent).await {
            panic!(
                "judgement failed for {:?}: {e}",
                self.message.text_content().unwrap_or_default()
            );
        }
        self
    }
}

impl std::ops::Deref for ChatMessageAssert<'_> {
    type Target = ChatMessage;
    fn deref(&self) -> &ChatMessage {
        self.message
    }
}

/// A call that passed [`EventAssert::is_function_call`]; derefs to the [`FunctionCall`].
#[derive(Debug, Clone, Copy)]
pub struct FunctionCallAssert<'a> {
    call: &'a FunctionCall,
}

impl<'a> FunctionCallAssert<'a> {
    /// The call.
    pub fn event(&self) -> &'a FunctionCall {
        self.call
    }
}

impl std::ops::Deref for FunctionCallAssert<'_> {
    type Target = FunctionCall;
    fn deref(&self) -> &FunctionCall {
        self.call
    }
}

/// A tool output that passed [`EventAssert::is_function_call_output`]; derefs to the
/// [`FunctionCallOutput`].
#[derive(Debug, Clone, Copy)]
pub struct FunctionCallOutputAssert<'a> {
    output: &'a FunctionCallOutput,
}

impl<'a> FunctionCallOutputAssert<'a> {
    /// The output.
    pub fn event(&self) -> &'a FunctionCallOutput {
        self.output
    }
}

impl std::ops::Deref for FunctionCallOutputAssert<'_> {
    type Target = FunctionCallOutput;
    fn deref(&self) -> &FunctionCallOutput {
        self.output
    }
}

/// A handoff that passed [`EventAssert::is_agent_handoff`]; derefs to the [`AgentHandoff`].
#[derive(Debug, Clone, Copy)]
pub struct AgentHandoffAssert<'a> {
    handoff: &'a AgentHandoff,
}

impl<'a> AgentHandoffAssert<'a> {
    /// The handoff.
    pub fn event(&self) -> &'a AgentHandoff {
        self.handoff
    }
}

impl std::ops::Deref for AgentHandoffAssert<'_> {
    type Target = AgentHandoff;
    fn deref(&self) -> &AgentHandoff {
        self.handoff
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
