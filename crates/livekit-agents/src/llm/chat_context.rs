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
}

/// An ordered conversation.
///
/// ```
/// use livekit_agents::llm::{ChatContext, ChatRole};
///
/// let mut ctx = ChatContext::new();
/// ctx.add_message(ChatRole::System, "You are a helpful assistant.");
/// ctx.add_message(ChatRole::User, "Hello!");
/// assert_eq!(ctx.items().len(), 2);
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

    /// Appends an item.
    pub fn push(&mut self, item: ChatItem) {
        self.items.push(item);
    }

    /// Appends a text message and returns a reference to it.
    pub fn add_message(&mut self, role: ChatRole, text: impl Into<String>) -> &ChatMessage {
        self.items.push(ChatItem::Message(ChatMessage::new(role, text)));
        match self.items.last() {
            Some(ChatItem::Message(m)) => m,
            _ => unreachable!("just pushed a message"),
        }
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
