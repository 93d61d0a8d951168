//! MCP tool results and their default conversion to what the model sees.

use serde_json::Value;

use crate::llm::{ToolError, ToolOutput};

/// One content block of an MCP tool result.
#[derive(Debug, Clone, PartialEq)]
pub enum McpContent {
    /// Text.
    Text(String),
    /// An image (base64 data as sent by the server).
    Image {
        /// Base64-encoded bytes.
        data: String,
        /// MIME type, e.g. `image/png`.
        mime_type: String,
    },
    /// Audio (base64 data as sent by the server).
    Audio {
        /// Base64-encoded bytes.
        data: String,
        /// MIME type, e.g. `audio/wav`.
        mime_type: String,
    },
    /// Any other block (embedded resource, resource link), as its JSON.
    Other(Value),
}

impl McpContent {
    /// The block from its MCP JSON form (`{"type": "text", "text": ...}`, ...).
    pub(crate) fn from_json(block: Value) -> Self {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let field = |name: &str| block.get(name).and_then(Value::as_str).map(str::to_owned);
        match kind {
            "text" => match field("text") {
                Some(text) => McpContent::Text(text),
                None => McpContent::Other(block),
            },
            "image" | "audio" => match (field("data"), field("mimeType")) {
                (Some(data), Some(mime_type)) if kind == "image" => {
                    McpContent::Image { data, mime_type }
                }
                (Some(data), Some(mime_type)) => McpContent::Audio { data, mime_type },
                _ => McpContent::Other(block),
            },
            _ => McpContent::Other(block),
        }
    }

    /// The block's MCP JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            McpContent::Text(text) => serde_json::json!({"type": "text", "text": text}),
            McpContent::Image { data, mime_type } => {
                serde_json::json!({"type": "image", "data": data, "mimeType": mime_type})
            }
            McpContent::Audio { data, mime_type } => {
                serde_json::json!({"type": "audio", "data": data, "mimeType": mime_type})
            }
            McpContent::Other(v) => v.clone(),
        }
    }

    /// The text, for text blocks.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            McpContent::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// What an MCP server returned for one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct McpToolResult {
    /// The tool's name.
    pub tool_name: String,
    /// The arguments it was called with.
    pub arguments: Value,
    /// The content blocks.
    pub content: Vec<McpContent>,
    /// Structured content (`structuredContent`), if any.
    pub structured_content: Option<Value>,
    /// Whether the server flagged the result as an error (`isError`).
    pub is_error: bool,
}

impl McpToolResult {
    /// The default conversion (see the [module docs](super)):
    ///
    /// - `isError`: a [`ToolError`] with the text blocks (other blocks as JSON), one per line;
    /// - only text blocks: the texts, one per line;
    /// - no content but structured content: that JSON;
    /// - no content at all: a [`ToolError`] saying so (as the Python framework does);
    /// - anything else: the JSON array of the blocks.
    pub fn into_output(self) -> Result<ToolOutput, ToolError> {
        let block_text = |c: &McpContent| match c {
            McpContent::Text(t) => t.clone(),
            other => other.to_json().to_string(),
        };
        if self.is_error {
            let text: Vec<String> = self.content.iter().map(block_text).collect();
            let message = if text.is_empty() {
                format!("Tool '{}' failed without a message.", self.tool_name)
            } else {
                text.join("\n")
            };
            return Err(ToolError::new(message));
        }
        if self.content.is_empty() {
            return match self.structured_content {
                Some(v) if !v.is_null() => Ok(ToolOutput::Value(Value::String(v.to_string()))),
                _ => Err(ToolError::new(format!(
                    "Tool '{}' completed without producing a result.",
                    self.tool_name
                ))),
            };
        }
        if self.content.iter().all(|c| c.as_text().is_some()) {
            let text: Vec<String> = self.content.iter().map(block_text).collect();
            return Ok(ToolOutput::Value(Value::String(text.join("\n"))));
        }
        let blocks: Vec<Value> = self.content.iter().map(McpContent::to_json).collect();
        Ok(ToolOutput::Value(Value::String(
            Value::Array(blocks).to_string(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(content: Vec<Value>, structured: Option<Value>, is_error: bool) -> McpToolResult {
        McpToolResult {
            tool_name: "t".into(),
            arguments: json!({}),
            content: content.into_iter().map(McpContent::from_json).collect(),
            structured_content: structured,
            is_error,
        }
    }

    fn text_of(out: Result<ToolOutput, ToolError>) -> String {
        match out {
            Ok(ToolOutput::Value(Value::String(s))) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn text_blocks_are_joined() {
        let r = result(
            vec![
                json!({"type": "text", "text": "a"}),
                json!({"type": "text", "text": "b"}),
            ],
            None,
            false,
        );
        assert_eq!(text_of(r.into_output()), "a\nb");
    }

    #[test]
    fn images_keep_the_block_json() {
        let r = result(
            vec![
                json!({"type": "text", "text": "logo:"}),
                json!({"type": "image", "data": "iVBO", "mimeType": "image/png"}),
            ],
            None,
            false,
        );
        let out: Value = serde_json::from_str(&text_of(r.into_output())).unwrap();
        assert_eq!(
            out,
            json!([{"type": "text", "text": "logo:"},
                   {"type": "image", "data": "iVBO", "mimeType": "image/png"}])
        );
    }

    #[test]
    fn structured_only_and_empty_results() {
        let r = result(vec![], Some(json!({"t": 1})), false);
        assert_eq!(text_of(r.into_output()), r#"{"t":1}"#);
        let err = result(vec![], None, false).into_output().unwrap_err();
        assert!(err.message.contains("without producing a result"));
    }

    #[test]
    fn errors_carry_the_server_text() {
        let r = result(vec![json!({"type": "text", "text": "boom"})], None, true);
        assert_eq!(r.into_output().unwrap_err().message, "boom");
        let r = result(vec![], None, true);
        assert!(r.into_output().unwrap_err().message.contains("failed"));
    }

    #[test]
    fn unknown_or_malformed_blocks_are_kept_as_json() {
        let c = McpContent::from_json(json!({"type": "image", "data": 3}));
        assert!(matches!(c, McpContent::Other(_)));
        let c = McpContent::from_json(json!("garbage"));
        assert_eq!(c.to_json(), json!("garbage"));
    }
}
