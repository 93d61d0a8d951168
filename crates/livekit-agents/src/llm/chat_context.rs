//! The conversation: [`ChatContext`] and its [`ChatItem`]s.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions from the application (newer providers).
    Developer,
    /// Instructions from the application.
    System,
    /// The user.
    User,
    /// The agent.
    Assistant,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// A URL (http(s) or data URL).
    Url {
        /// The URL.
        url: String,
    },
    /// Encoded image bytes.
    Bytes {
        /// The bytes (base64 in JSON).
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        /// MIME type, e.g. `image/png`.
        mime_type: String,
    },
}

/// An image in a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageContent {
    /// Content id.
    pub id: String,
    /// The image.
    pub image: ImageSource,
    /// Detail hint for providers that support it (`auto`, `low`, `high`).
    pub inference_detail: String,
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatContent {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    Image(ImageContent),
    /// Audio with its transcript (the audio itself is not kept in the context).
    Audio {
        /// What was said.
        transcript: String,
    },
}

/// A message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Item id.
    pub id: String,
    /// Author.
    pub role: ChatRole,
    /// Content parts.
    pub content: Vec<ChatContent>,
    /// The agent was interrupted while saying this; the content is what the user heard.
    #[serde(default)]
    pub interrupted: bool,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: f64,
}

impl ChatMessage {
    /// A text message with a fresh id and the current time.
    pub fn new(role: ChatRole, text: impl Into<String>) -> Self {
        Self {
            id: new_item_id("item"),
            role,
            content: vec![ChatContent::Text { text: text.into() }],
            interrupted: false,
            created_at: now_secs(),
        }
    }

    /// A message with the given content parts, a fresh id and the current time.
    pub fn with_content(role: ChatRole, content: Vec<ChatContent>) -> Self {
        Self {
            id: new_item_id("item"),
            role,
            content,
            interrupted: false,
            created_at: now_secs(),
        }
    }

    /// Sets the creation time (builder style; used to place the message in time order).
    pub fn at(mut self, created_at: f64) -> Self {
        self.created_at = created_at;
        self
    }

    /// Whether this is an instruction message (`system` or `developer`).
    pub fn is_instructions(&self) -> bool {
        matches!(self.role, ChatRole::System | ChatRole::Developer)
    }

    /// Whether the message says nothing: no parts, or only blank text/transcripts (an image
    /// counts as content).
    pub fn is_empty(&self) -> bool {
        self.content.iter().all(|c| match c {
            ChatContent::Text { text } => text.trim().is_empty(),
            ChatContent::Audio { transcript } => transcript.trim().is_empty(),
            ChatContent::Image(_) => false,
        })
    }

    /// All text parts (and audio transcripts) joined with newlines, or `None` if there is none.
    pub fn text_content(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|c| match c {
                ChatContent::Text { text } => Some(text.as_str()),
                ChatContent::Audio { transcript } => Some(transcript.as_str()),
                ChatContent::Image(_) => None,
            })
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("\n"))
        }
    }
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Item id.
    pub id: String,
    /// The provider's call id (pairs the call with its output).
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: f64,
}

impl FunctionCall {
    /// A call with a fresh item id and the current time.
    pub fn new(
        call_id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: new_item_id("item"),
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
            created_at: now_secs(),
        }
    }

    /// Sets the creation time (builder style).
    pub fn at(mut self, created_at: f64) -> Self {
        self.created_at = created_at;
        self
    }
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutput {
    /// Item id.
    pub id: String,
    /// The call this answers.
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// Output text (JSON for structured values).
    pub output: String,
    /// The tool failed; `output` is the error message the model sees.
    pub is_error: bool,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: f64,
}

impl FunctionCallOutput {
    /// An output with a fresh item id and the current time.
    pub fn new(
        call_id: impl Into<String>,
        name: impl Into<String>,
        output: impl Into<String>,
        is_error: bool,
    ) -> Self {
        Self {
            id: new_item_id("item"),
            call_id: call_id.into(),
            name: name.into(),
            output: output.into(),
            is_error,
            created_at: now_secs(),
        }
    }

    /// The output answering `call` (same call id and name).
    pub fn for_call(call: &FunctionCall, output: impl Into<String>, is_error: bool) -> Self {
        Self::new(call.call_id.clone(), call.name.clone(), output, is_error)
    }

    /// Sets the creation time (builder style).
    pub fn at(mut self, created_at: f64) -> Self {
        self.created_at = created_at;
        self
    }
}

/// A switch of the active agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentHandoff {
    /// Item id.
    pub id: String,
    /// The previous agent's id, if any.
    pub old_agent_id: Option<String>,
    /// The new agent's id.
    pub new_agent_id: String,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: f64,
}

impl AgentHandoff {
    /// A handoff item with a fresh id and the current time.
    pub fn new(old_agent_id: Option<String>, new_agent_id: impl Into<String>) -> Self {
        Self {
            id: new_item_id("item"),
            old_agent_id,
            new_agent_id: new_agent_id.into(),
            created_at: now_secs(),
        }
    }
}

/// An item of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatItem {
    /// A message.
    Message(ChatMessage),
    /// A tool call.
    FunctionCall(FunctionCall),
    /// A tool result.
    FunctionCallOutput(FunctionCallOutput),
    /// An agent switch.
    AgentHandoff(AgentHandoff),
}

impl ChatItem {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            ChatItem::Message(m) => &m.id,
            ChatItem::FunctionCall(c) => &c.id,
            ChatItem::FunctionCallOutput(o) => &o.id,
            ChatItem::AgentHandoff(h) => &h.id,
        }
    }

    /// The item's creation time.
    pub fn created_at(&self) -> f64 {
        match self {
            ChatItem::Message(m) => m.created_at,
            ChatItem::FunctionCall(c) => c.created_at,
            ChatItem::FunctionCallOutput(o) => o.created_at,
            ChatItem::AgentHandoff(h) => h.created_at,
        }
    }

    /// The message, if this item is one.
    pub fn as_message(&self) -> Option<&ChatMessage> {
        match self {
            ChatItem::Message(m) => Some(m),
            _ => None,
        }
    }

    /// Whether this is a function call or a function call output.
    pub fn is_function_item(&self) -> bool {
        matches!(
            self,
            ChatItem::FunctionCall(_) | ChatItem::FunctionCallOutput(_)
        )
    }

    /// Whether this is an instruction message (`system` or `developer`).
    pub fn is_instructions(&self) -> bool {
        self.as_message().is_some_and(ChatMessage::is_instructions)
    }

    /// Whether the two items say the same thing, ignoring item ids, image content ids and
    /// timestamps (see [`ChatContext::is_equivalent`]).
    pub fn is_equivalent(&self, other: &ChatItem) -> bool {
        match (self, other) {
            (ChatItem::Message(a), ChatItem::Message(b)) => {
                a.role == b.role
                    && a.interrupted == b.interrupted
                    && a.content.len() == b.content.len()
                    && a.content
                        .iter()
                        .zip(&b.content)
                        .all(|(x, y)| content_equivalent(x, y))
            }
            (ChatItem::FunctionCall(a), ChatItem::FunctionCall(b)) => {
                a.name == b.name && a.call_id == b.call_id && a.arguments == b.arguments
            }
            (ChatItem::FunctionCallOutput(a), ChatItem::FunctionCallOutput(b)) => {
                a.name == b.name
                    && a.call_id == b.call_id
                    && a.output == b.output
                    && a.is_error == b.is_error
            }
            (ChatItem::AgentHandoff(a), ChatItem::AgentHandoff(b)) => {
                a.old_agent_id == b.old_agent_id && a.new_agent_id == b.new_agent_id
            }
            _ => false,
        }
    }
}

fn content_equivalent(a: &ChatContent, b: &ChatContent) -> bool {
    match (a, b) {
        (ChatContent::Image(x), ChatContent::Image(y)) => {
            x.image == y.image && x.inference_detail == y.inference_detail
        }
        _ => a == b,
    }
}

impl From<ChatMessage> for ChatItem {
    fn from(m: ChatMessage) -> Self {
        ChatItem::Message(m)
    }
}

impl From<FunctionCall> for ChatItem {
    fn from(c: FunctionCall) -> Self {
        ChatItem::FunctionCall(c)
    }
}

impl From<FunctionCallOutput> for ChatItem {
    fn from(o: FunctionCallOutput) -> Self {
        ChatItem::FunctionCallOutput(o)
    }
}

impl From<AgentHandoff> for ChatItem {
    fn from(h: AgentHandoff) -> Self {
        ChatItem::AgentHandoff(h)
    }
}

/// Which items [`ChatContext::copy`] and [`ChatContext::merge`] keep. The default keeps
/// everything.
///
/// ```
/// use livekit_agents::llm::ItemFilter;
///
/// let filter = ItemFilter::default()
///     .exclude_function_calls()
///     .exclude_instructions();
/// assert!(filter.exclude_function_calls && filter.exclude_instructions);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemFilter {
    /// Drop function calls and their outputs.
    pub exclude_function_calls: bool,
    /// Drop instruction messages (`system` and `developer`).
    pub exclude_instructions: bool,
    /// Drop messages without content (see [`ChatMessage::is_empty`]).
    pub exclude_empty_messages: bool,
    /// Drop agent handoff items.
    pub exclude_handoffs: bool,
    /// When set, drop function calls and outputs of tools not named here (e.g. when the new
    /// agent does not have the tools an earlier agent called).
    pub only_tools: Option<Vec<String>>,
}

impl ItemFilter {
    /// Drops function calls and their outputs.
    pub fn exclude_function_calls(mut self) -> Self {
        self.exclude_function_calls = true;
        self
    }

    /// Drops `system` and `developer` messages.
    pub fn exclude_instructions(mut self) -> Self {
        self.exclude_instructions = true;
        self
    }

    /// Drops messages without content.
    pub fn exclude_empty_messages(mut self) -> Self {
        self.exclude_empty_messages = true;
        self
    }

    /// Drops agent handoff items.
    pub fn exclude_handoffs(mut self) -> Self {
        self.exclude_handoffs = true;
        self
    }

    /// Keeps function calls and outputs only for these tool names.
    pub fn only_tools<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.only_tools = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Whether `item` passes the filter.
    pub fn keeps(&self, item: &ChatItem) -> bool {
        match item {
            ChatItem::FunctionCall(FunctionCall { name, .. })
            | ChatItem::FunctionCallOutput(FunctionCallOutput { name, .. }) => {
                !self.exclude_function_calls
                    && self
                        .only_tools
                        .as_ref()
                        .is_none_or(|tools| tools.iter().any(|t| t == name))
            }
            ChatItem::Message(m) => {
                !(self.exclude_instructions && m.is_instructions()
                    || self.exclude_empty_messages && m.is_empty())
            }
            ChatItem::AgentHandoff(_) => !self.exclude_handoffs,
        }
    }
}

/// An ordered conversation.
///
/// Items are kept in creation-time order: [`push`](Self::push) appends (for items created
/// now), [`insert`](Self::insert) and [`merge`](Self::merge) place items by their
/// `created_at`.
///
/// ```
/// use livekit_agents::llm::{ChatContext, ChatRole};
///
/// let mut ctx = ChatContext::new();
/// ctx.add_message(ChatRole::System, "You are a helpful assistant.");
/// ctx.add_message(ChatRole::User, "Hello!");
/// assert_eq!(ctx.items().len(), 2);
/// assert_eq!(ctx.last_user_message().and_then(|m| m.text_content()).as_deref(), Some("Hello!"));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatContext {
    items: Vec<ChatItem>,
}

impl ChatContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context holding `items` in the given order.
    pub fn from_items(items: Vec<ChatItem>) -> Self {
        Self { items }
    }

    /// The items, oldest first.
    pub fn items(&self) -> &[ChatItem] {
        &self.items
    }

    /// Mutable access to the items.
    pub fn items_mut(&mut self) -> &mut Vec<ChatItem> {
        &mut self.items
    }

    /// Consumes the context, returning its items.
    pub fn into_items(self) -> Vec<ChatItem> {
        self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The messages, oldest first (function calls, outputs and handoffs skipped).
    pub fn messages(&self) -> impl Iterator<Item = &ChatMessage> + '_ {
        self.items.iter().filter_map(ChatItem::as_message)
    }

    /// Appends an item (for items created now; use [`insert`](Self::insert) to place an older
    /// item by time).
    pub fn push(&mut self, item: impl Into<ChatItem>) {
        self.items.push(item.into());
    }

    /// Appends a text message and returns a reference to it.
    pub fn add_message(&mut self, role: ChatRole, text: impl Into<String>) -> &ChatMessage {
        let idx = self.items.len();
        self.items
            .push(ChatItem::Message(ChatMessage::new(role, text)));
        match &self.items[idx] {
            ChatItem::Message(m) => m,
            _ => unreachable!("just pushed a message"),
        }
    }

    /// Inserts an item by creation time: after every item created at the same time or earlier,
    /// so equal timestamps keep insertion order. Returns the index it was placed at.
    pub fn insert(&mut self, item: impl Into<ChatItem>) -> usize {
        let item = item.into();
        let idx = self.insertion_index(item.created_at());
        self.items.insert(idx, item);
        idx
    }

    /// Inserts several items by creation time (see [`insert`](Self::insert)).
    pub fn insert_all<I: Into<ChatItem>>(&mut self, items: impl IntoIterator<Item = I>) {
        for item in items {
            self.insert(item);
        }
    }

    /// Where an item created at `created_at` belongs: after the last item created at the same
    /// time or earlier (the items are assumed to be in time order).
    pub fn insertion_index(&self, created_at: f64) -> usize {
        self.items
            .iter()
            .rposition(|it| it.created_at() <= created_at)
            .map_or(0, |i| i + 1)
    }

    /// The item with this id.
    pub fn get(&self, id: &str) -> Option<&ChatItem> {
        self.items.iter().find(|it| it.id() == id)
    }

    /// The item with this id, mutably.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut ChatItem> {
        self.items.iter_mut().find(|it| it.id() == id)
    }

    /// The position of the item with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|it| it.id() == id)
    }

    /// Removes and returns the item with this id.
    pub fn remove(&mut self, id: &str) -> Option<ChatItem> {
        let idx = self.index_of(id)?;
        Some(self.items.remove(idx))
    }

    /// Replaces the item with the same id, or appends `item` if there is none. Returns the
    /// replaced item.
    pub fn upsert(&mut self, item: impl Into<ChatItem>) -> Option<ChatItem> {
        let item = item.into();
        match self.index_of(item.id()) {
            Some(idx) => Some(std::mem::replace(&mut self.items[idx], item)),
            None => {
                self.items.push(item);
                None
            }
        }
    }

    /// The most recent user message.
    pub fn last_user_message(&self) -> Option<&ChatMessage> {
        self.items
            .iter()
            .rev()
            .filter_map(ChatItem::as_message)
            .find(|m| m.role == ChatRole::User)
    }

    /// The most recent message of any role.
    pub fn last_message(&self) -> Option<&ChatMessage> {
        self.items.iter().rev().find_map(ChatItem::as_message)
    }

    /// A copy keeping only the items `filter` keeps (the reference's
    /// `copy(exclude_function_call=…, exclude_instructions=…, …)`).
    ///
    /// ```
    /// use livekit_agents::llm::{ChatContext, ChatRole, FunctionCall, ItemFilter};
    ///
    /// let mut ctx = ChatContext::new();
    /// ctx.add_message(ChatRole::System, "Be brief.");
    /// ctx.add_message(ChatRole::User, "Weather?");
    /// ctx.push(FunctionCall::new("call_1", "get_weather", "{}"));
    /// let copy = ctx.copy(&ItemFilter::default().exclude_instructions().exclude_function_calls());
    /// assert_eq!(copy.len(), 1);
    /// ```
    pub fn copy(&self, filter: &ItemFilter) -> ChatContext {
        ChatContext {
            items: self
                .items
                .iter()
                .filter(|it| filter.keeps(it))
                .cloned()
                .collect(),
        }
    }

    /// Keeps the last `max_items` items, in place.
    ///
    /// Like the reference, the kept window never starts with a function call or a function
    /// call output (so an output is never kept without its call), and the first instruction
    /// message (`system`/`developer`) is put back at the front if it fell out of the window;
    /// the result may therefore hold `max_items + 1` items. Outputs whose call was cut are
    /// dropped too, wherever they are. `max_items == 0` keeps only the instructions.
    pub fn truncate(&mut self, max_items: usize) -> &mut Self {
        if self.items.len() <= max_items {
            return self;
        }
        let instructions = self.items.iter().find(|it| it.is_instructions()).cloned();
        let mut kept: Vec<ChatItem> = self.items.split_off(self.items.len() - max_items);
        let lead = kept
            .iter()
            .position(|it| !it.is_function_item())
            .unwrap_or(kept.len());
        kept.drain(..lead);

        // Parallel calls may interleave (call A, call B, output A, output B): an output whose
        // call fell out of the window would be an orphan the provider rejects.
        let calls: std::collections::HashSet<String> = kept
            .iter()
            .filter_map(|it| match it {
                ChatItem::FunctionCall(c) => Some(c.call_id.clone()),
                _ => None,
            })
            .collect();
        kept.retain(|it| match it {
            ChatItem::FunctionCallOutput(o) => calls.contains(&o.call_id),
            _ => true,
        });

        if let Some(instr) = instructions {
            if !kept.iter().any(|it| it.id() == instr.id()) {
                kept.insert(0, instr);
            }
        }
        self.items = kept;
        self
    }

    /// Adds the items of `other` that `filter` keeps and that are not already here (by id),
    /// each placed by creation time.
    pub fn merge(&mut self, other: &ChatContext, filter: &ItemFilter) -> &mut Self {
        let mut ids: std::collections::HashSet<String> =
            self.items.iter().map(|it| it.id().to_owned()).collect();
        for item in &other.items {
            if filter.keeps(item) && ids.insert(item.id().to_owned()) {
                self.insert(item.clone());
            }
        }
        self
    }

    /// Whether `other` holds the same conversation: the same items in the same order with the
    /// same role, content and interrupted flag (messages), name, call id and arguments (calls),
    /// name, call id, output and error flag (outputs).
    ///
    /// Unlike the reference, item ids are ignored as well as timestamps: the model never sees
    /// them, so two contexts that are equivalent here produce the same completion. The voice
    /// pipeline uses this to decide whether a preemptive generation can be kept.
    pub fn is_equivalent(&self, other: &ChatContext) -> bool {
        self.items.len() == other.items.len()
            && self
                .items
                .iter()
                .zip(&other.items)
                .all(|(a, b)| a.is_equivalent(b))
    }
}

/// A fresh item id with the given prefix (`item_…`, `fnc_…`).
pub fn new_item_id(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Seconds since the Unix epoch (wall clock; used for item ordering across processes).
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: ChatRole, text: &str, t: f64) -> ChatMessage {
        ChatMessage::new(role, text).at(t)
    }

    fn texts(ctx: &ChatContext) -> Vec<String> {
        ctx.items()
            .iter()
            .map(|it| match it {
                ChatItem::Message(m) => m.text_content().unwrap_or_default(),
                ChatItem::FunctionCall(c) => format!("call:{}", c.call_id),
                ChatItem::FunctionCallOutput(o) => format!("out:{}", o.call_id),
                ChatItem::AgentHandoff(h) => format!("handoff:{}", h.new_agent_id),
            })
            .collect()
    }

    /// sys, u1, a1, call c1, out c1, a2, u2 at times 0..7
    fn conversation() -> ChatContext {
        let mut ctx = ChatContext::new();
        ctx.push(msg(ChatRole::System, "sys", 0.0));
        ctx.push(msg(ChatRole::User, "u1", 1.0));
        ctx.push(msg(ChatRole::Assistant, "a1", 2.0));
        ctx.push(FunctionCall::new("c1", "lookup", "{}").at(3.0));
        ctx.push(FunctionCallOutput::new("c1", "lookup", "ok", false).at(4.0));
        ctx.push(msg(ChatRole::Assistant, "a2", 5.0));
        ctx.push(msg(ChatRole::User, "u2", 6.0));
        ctx
    }

    #[test]
    fn insert_keeps_time_order_and_ties_in_insertion_order() {
        let mut ctx = ChatContext::new();
        ctx.insert(msg(ChatRole::User, "b", 2.0));
        ctx.insert(msg(ChatRole::User, "a", 1.0));
        ctx.insert(msg(ChatRole::User, "d", 4.0));
        ctx.insert(msg(ChatRole::User, "c", 2.0));
        assert_eq!(ctx.insert(msg(ChatRole::User, "first", 0.5)), 0);
        assert_eq!(texts(&ctx), ["first", "a", "b", "c", "d"]);
        assert_eq!(ctx.insertion_index(10.0), 5);
        assert_eq!(ctx.insertion_index(0.0), 0);
    }

    #[test]
    fn lookup_by_id() {
        let mut ctx = conversation();
        let id = ctx.items()[2].id().to_owned();
        assert_eq!(ctx.index_of(&id), Some(2));
        assert!(
            matches!(ctx.get(&id), Some(ChatItem::Message(m)) if m.text_content().as_deref() == Some("a1"))
        );
        if let Some(ChatItem::Message(m)) = ctx.get_mut(&id) {
            m.interrupted = true;
        }
        assert!(ctx.items()[2].as_message().is_some_and(|m| m.interrupted));
        assert!(ctx.get("missing").is_none());
        assert!(ctx.remove(&id).is_some());
        assert_eq!(ctx.len(), 6);
        assert_eq!(ctx.index_of(&id), None);
    }

    #[test]
    fn upsert_replaces_or_appends() {
        let mut ctx = conversation();
        let mut m = ctx.items()[1].as_message().cloned().unwrap();
        m.content = vec![ChatContent::Text {
            text: "edited".into(),
        }];
        assert!(ctx.upsert(m).is_some());
        assert_eq!(texts(&ctx)[1], "edited");
        assert!(ctx.upsert(msg(ChatRole::User, "new", 9.0)).is_none());
        assert_eq!(ctx.len(), 8);
    }

    #[test]
    fn last_user_message_skips_other_items() {
        let mut ctx = conversation();
        ctx.push(FunctionCall::new("c2", "x", "{}"));
        assert_eq!(
            ctx.last_user_message()
                .and_then(|m| m.text_content())
                .as_deref(),
            Some("u2")
        );
        assert!(ChatContext::new().last_user_message().is_none());
        assert_eq!(
            ctx.last_message().and_then(|m| m.text_content()).as_deref(),
            Some("u2")
        );
    }

    #[test]
    fn copy_filters() {
        let mut ctx = conversation();
        ctx.push(msg(ChatRole::Developer, "dev", 7.0));
        ctx.push(AgentHandoff::new(Some("a".into()), "b"));
        ctx.push(ChatMessage::with_content(ChatRole::Assistant, vec![]));
        ctx.push(msg(ChatRole::User, "  ", 9.0));

        assert_eq!(ctx.copy(&ItemFilter::default()), ctx);
        assert_eq!(
            texts(&ctx.copy(&ItemFilter::default().exclude_function_calls())),
            ["sys", "u1", "a1", "a2", "u2", "dev", "handoff:b", "", "  "]
        );
        assert_eq!(
            texts(&ctx.copy(&ItemFilter::default().exclude_instructions())),
            [
                "u1",
                "a1",
                "call:c1",
                "out:c1",
                "a2",
                "u2",
                "handoff:b",
                "",
                "  "
            ]
        );
        assert_eq!(
            texts(
                &ctx.copy(
                    &ItemFilter::default()
                        .exclude_handoffs()
                        .exclude_empty_messages()
                )
            ),
            ["sys", "u1", "a1", "call:c1", "out:c1", "a2", "u2", "dev"]
        );
        assert_eq!(
            ctx.copy(&ItemFilter::default().only_tools(["other"])).len(),
            ctx.len() - 2
        );
        assert_eq!(
            ctx.copy(&ItemFilter::default().only_tools(["lookup"]))
                .len(),
            ctx.len()
        );
    }

    #[test]
    fn image_message_is_not_empty() {
        let m = ChatMessage::with_content(
            ChatRole::User,
            vec![ChatContent::Image(ImageContent {
                id: "img".into(),
                image: ImageSource::Url {
                    url: "https://example.com/a.png".into(),
                },
                inference_detail: "auto".into(),
            })],
        );
        assert!(!m.is_empty());
        assert!(ChatMessage::new(ChatRole::User, " \n").is_empty());
    }

    #[test]
    fn truncate_noop_when_short() {
        let mut ctx = conversation();
        ctx.truncate(7);
        assert_eq!(ctx.len(), 7);
        ctx.truncate(100);
        assert_eq!(ctx.len(), 7);
    }

    #[test]
    fn truncate_keeps_last_items_and_instructions() {
        let mut ctx = conversation();
        ctx.truncate(2);
        assert_eq!(texts(&ctx), ["sys", "a2", "u2"]);
    }

    #[test]
    fn truncate_never_starts_with_an_output() {
        // Window of 4: [out c1, a2, u2] would start with the output of a call that was cut.
        let mut ctx = conversation();
        ctx.truncate(3);
        assert_eq!(texts(&ctx), ["sys", "a2", "u2"]);
    }

    #[test]
    fn truncate_keeps_call_with_its_output() {
        let mut ctx = conversation();
        ctx.truncate(5);
        assert_eq!(texts(&ctx), ["sys", "a1", "call:c1", "out:c1", "a2", "u2"]);
        // Window starting exactly at the call: the leading call is dropped with its output.
        let mut ctx = conversation();
        ctx.truncate(4);
        assert_eq!(texts(&ctx), ["sys", "a2", "u2"]);
    }

    #[test]
    fn truncate_drops_interleaved_parallel_outputs_without_calls() {
        let mut ctx = ChatContext::new();
        ctx.push(msg(ChatRole::User, "u", 0.0));
        ctx.push(FunctionCall::new("a", "t", "{}"));
        ctx.push(msg(ChatRole::Assistant, "thinking", 1.0));
        ctx.push(FunctionCall::new("b", "t", "{}"));
        ctx.push(FunctionCallOutput::new("a", "t", "1", false));
        ctx.push(FunctionCallOutput::new("b", "t", "2", false));
        ctx.truncate(4);
        assert_eq!(texts(&ctx), ["thinking", "call:b", "out:b"]);
    }

    #[test]
    fn truncate_with_instructions_inside_window_does_not_duplicate() {
        let mut ctx = ChatContext::new();
        ctx.push(msg(ChatRole::User, "u1", 0.0));
        ctx.push(msg(ChatRole::User, "u2", 1.0));
        ctx.push(msg(ChatRole::Developer, "dev", 2.0));
        ctx.push(msg(ChatRole::User, "u3", 3.0));
        ctx.truncate(2);
        assert_eq!(texts(&ctx), ["dev", "u3"]);
        ctx.truncate(0);
        assert_eq!(texts(&ctx), ["dev"]);
    }

    #[test]
    fn merge_adds_missing_items_by_time() {
        let base = conversation();
        let mut ctx = base.copy(&ItemFilter::default().exclude_function_calls());
        let mut other = base.clone();
        other.push(msg(ChatRole::Assistant, "late", 10.0));
        other.push(msg(ChatRole::Developer, "extra instructions", 2.5));
        ctx.merge(&other, &ItemFilter::default().exclude_instructions());
        assert_eq!(
            texts(&ctx),
            ["sys", "u1", "a1", "call:c1", "out:c1", "a2", "u2", "late"]
        );
        // Merging again adds nothing.
        let before = ctx.clone();
        ctx.merge(&other, &ItemFilter::default().exclude_instructions());
        assert_eq!(ctx, before);
    }

    #[test]
    fn equivalence_ignores_ids_and_timestamps() {
        let a = conversation();
        let mut b = ChatContext::new();
        for item in a.items() {
            let mut item = item.clone();
            match &mut item {
                ChatItem::Message(m) => {
                    m.id = new_item_id("other");
                    m.created_at += 100.0;
                }
                ChatItem::FunctionCall(c) => c.id = new_item_id("other"),
                ChatItem::FunctionCallOutput(o) => o.id = new_item_id("other"),
                ChatItem::AgentHandoff(h) => h.id = new_item_id("other"),
            }
            b.push(item);
        }
        assert!(a.is_equivalent(&b));
        assert!(a.is_equivalent(&a.clone()));

        let mut c = b.clone();
        if let ChatItem::Message(m) = &mut c.items_mut()[2] {
            m.interrupted = true;
        }
        assert!(!a.is_equivalent(&c));
        let mut d = b.clone();
        if let ChatItem::FunctionCallOutput(o) = &mut d.items_mut()[4] {
            o.output = "different".into();
        }
        assert!(!a.is_equivalent(&d));
        let mut e = b.clone();
        e.push(msg(ChatRole::User, "more", 20.0));
        assert!(!a.is_equivalent(&e));
        let mut f = b;
        f.items_mut().swap(1, 2);
        assert!(!a.is_equivalent(&f));
    }

    #[test]
    fn serde_round_trip() {
        let mut ctx = conversation();
        ctx.push(AgentHandoff::new(None, "agent_2"));
        ctx.push(ChatMessage::with_content(
            ChatRole::User,
            vec![
                ChatContent::Text {
                    text: "look".into(),
                },
                ChatContent::Image(ImageContent {
                    id: "img_1".into(),
                    image: ImageSource::Bytes {
                        data: vec![0, 1, 2, 255],
                        mime_type: "image/png".into(),
                    },
                    inference_detail: "low".into(),
                }),
                ChatContent::Audio {
                    transcript: "hi".into(),
                },
            ],
        ));
        let json = serde_json::to_string(&ctx).unwrap();
        let back: ChatContext = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ctx);
        let value = serde_json::to_value(&ctx).unwrap();
        assert_eq!(value["items"][0]["type"], "message");
        assert_eq!(value["items"][0]["role"], "system");
        assert_eq!(value["items"][3]["type"], "function_call");
        assert_eq!(value["items"][4]["type"], "function_call_output");
        assert_eq!(value["items"][7]["type"], "agent_handoff");
        assert_eq!(value["items"][8]["content"][1]["image"]["data"], "AAEC/w==");
    }
}
