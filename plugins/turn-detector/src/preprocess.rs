//! From a chat context to the model's input ids, as the reference does it:
//!
//! 1. keep the `user`/`assistant` messages with text, the last [`MAX_HISTORY_TURNS`];
//! 2. normalize each text (NFKC, lower-case, no punctuation but `'` and `-`, single spaces);
//! 3. merge adjacent messages of the same role with a space;
//! 4. render the tokenizer's chat template (`add_generation_prompt = false`) and cut the text at
//!    the last [`EOU_MARKER`], so the last user turn is left "open";
//! 5. tokenize without special tokens and keep the last [`MAX_HISTORY_TOKENS`] ids.

use std::sync::LazyLock;

use livekit_agents::llm::{ChatContext, ChatItem, ChatRole};
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::error::LoadError;

/// How many messages (before merging) the model sees.
pub const MAX_HISTORY_TURNS: usize = 6;
/// How many tokens the model sees (the most recent ones).
pub const MAX_HISTORY_TOKENS: usize = 128;
/// The chat template's end-of-turn token; the text is cut at its last occurrence.
pub const EOU_MARKER: &str = "<|im_end|>";

const TEMPLATE_NAME: &str = "chat_template";

/// Who wrote a turn (the model only sees these two roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TurnRole {
    /// The user.
    User,
    /// The agent.
    Assistant,
}

/// One message as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatTurn {
    /// The author.
    pub role: TurnRole,
    /// The text.
    #[serde(rename = "content")]
    pub text: String,
}

impl ChatTurn {
    /// A turn.
    pub fn new(role: TurnRole, text: impl Into<String>) -> Self {
        Self {
            role,
            text: text.into(),
        }
    }
}

/// The last [`MAX_HISTORY_TURNS`] user/assistant messages of `chat_ctx` that have text.
///
/// Tool calls, tool outputs, handoffs, system/developer messages and messages without text
/// (e.g. only an image) are skipped, like the reference.
pub fn turns_from_chat_ctx(chat_ctx: &ChatContext) -> Vec<ChatTurn> {
    // From the end, so a long history costs no more than its last messages.
    let mut turns: Vec<ChatTurn> = chat_ctx
        .items()
        .iter()
        .rev()
        .filter_map(|item| match item {
            ChatItem::Message(msg) => {
                let role = match msg.role {
                    ChatRole::User => TurnRole::User,
                    ChatRole::Assistant => TurnRole::Assistant,
                    ChatRole::System | ChatRole::Developer => return None,
                };
                let text = msg.text_content()?;
                (!text.is_empty()).then(|| ChatTurn::new(role, text))
            }
            _ => None,
        })
        .take(MAX_HISTORY_TURNS)
        .collect();
    turns.reverse();
    turns
}

static PUNCTUATION: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"[\p{P}--['\-]]").ok());

/// The multilingual normalization: NFKC of the lower-cased text, Unicode punctuation removed
/// except `'` and `-`, whitespace runs collapsed to one space, trimmed.
///
/// ```
/// use livekit_plugins_turn_detector::normalize_text;
///
/// assert_eq!(normalize_text("  Hello,   WORLD! It's a well-known fact…"), "hello world it's a well-known fact");
/// assert_eq!(normalize_text("¿Qué tal?"), "qué tal");
/// ```
pub fn normalize_text(text: &str) -> String {
    let folded: String = text.to_lowercase().nfkc().collect();
    let stripped = match PUNCTUATION.as_ref() {
        Some(re) => re.replace_all(&folded, ""),
        // The pattern is a constant and compiles; keep the text rather than panic.
        None => std::borrow::Cow::Borrowed(folded.as_str()),
    };
    stripped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Normalizes (when `normalize` is set) and merges adjacent turns of the same role with a
/// space, like the reference: turns with no text are skipped, but a turn that normalizes to
/// nothing (e.g. "...") is kept as an empty turn, so the model still sees whose turn it is.
pub fn merge_turns(turns: &[ChatTurn], normalize: bool) -> Vec<ChatTurn> {
    let mut merged: Vec<ChatTurn> = Vec::with_capacity(turns.len());
    for turn in turns.iter().filter(|t| !t.text.is_empty()) {
        let text = if normalize {
            normalize_text(&turn.text)
        } else {
            turn.text.clone()
        };
        match merged.last_mut() {
            Some(last) if last.role == turn.role => {
                last.text.push(' ');
                last.text.push_str(&text);
            }
            _ => merged.push(ChatTurn::new(turn.role, text)),
        }
    }
    merged
}

/// The chat template of a Hugging Face `tokenizer_config.json`, rendered with minijinja in the
/// way `transformers` renders it (`trim_blocks`, `lstrip_blocks`, the special tokens as
/// variables, `raise_exception`, and common Python string methods).
pub struct ChatTemplate {
    env: Environment<'static>,
    special_tokens: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: TurnRole,
    content: &'a str,
}

impl ChatTemplate {
    /// Reads the template and special tokens from the content of `tokenizer_config.json`.
    ///
    /// `chat_template` may be a string or a list of `{name, template}` (the one named
    /// `default` is used, else the first).
    pub fn from_tokenizer_config(json: &str) -> Result<Self, LoadError> {
        let config: serde_json::Value =
            serde_json::from_str(json).map_err(|e| LoadError::Config(e.to_string()))?;
        let source = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => {
                let named = |name: &str| {
                    list.iter()
                        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
                };
                named("default")
                    .or_else(|| list.first())
                    .and_then(|t| t.get("template"))
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| LoadError::Config("chat_template list has no template".into()))?
            }
            _ => {
                return Err(LoadError::Config(
                    "tokenizer_config.json has no chat_template".into(),
                ))
            }
        };
        let mut special_tokens = serde_json::Map::new();
        for key in [
            "bos_token",
            "eos_token",
            "unk_token",
            "pad_token",
            "sep_token",
            "cls_token",
        ] {
            let token = match config.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Object(o)) => {
                    o.get("content").and_then(|c| c.as_str()).map(str::to_owned)
                }
                _ => None,
            };
            if let Some(token) = token {
                special_tokens.insert(key.to_owned(), token.into());
            }
        }
        Self::new(source, special_tokens)
    }

    /// A template from its Jinja source and the special-token variables it may use.
    pub fn new(
        source: String,
        special_tokens: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, LoadError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.set_unknown_method_callback(python_string_methods);
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| LoadError::Config(format!("invalid chat template: {e}")))?;
        Ok(Self {
            env,
            special_tokens,
        })
    }

    /// Renders `turns` (no generation prompt, no tools).
    pub fn render(&self, turns: &[ChatTurn]) -> Result<String, PreprocessError> {
        let messages: Vec<TemplateMessage<'_>> = turns
            .iter()
            .map(|t| TemplateMessage {
                role: t.role,
                content: &t.text,
            })
            .collect();
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| PreprocessError::Template(e.to_string()))?;
        let mut ctx = self.special_tokens.clone();
        ctx.insert(
            "messages".into(),
            serde_json::to_value(&messages).unwrap_or_default(),
        );
        ctx.insert("add_generation_prompt".into(), false.into());
        template
            .render(Value::from_serialize(&ctx))
            .map_err(|e| PreprocessError::Template(e.to_string()))
    }
}

/// The Python `str` methods chat templates commonly call (`strip`, `startswith`, …), which
/// minijinja does not have.
fn python_string_methods(
    _state: &minijinja::State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    let Some(s) = value.as_str() else {
        return Err(minijinja::Error::from(ErrorKind::UnknownMethod));
    };
    let arg = |i: usize| args.get(i).and_then(|v| v.as_str());
    let chars_arg = |i: usize| arg(i).map(|c| c.chars().collect::<Vec<char>>());
    let out = match method {
        "strip" => match chars_arg(0) {
            Some(cs) => Value::from(s.trim_matches(cs.as_slice())),
            None => Value::from(s.trim()),
        },
        "lstrip" => match chars_arg(0) {
            Some(cs) => Value::from(s.trim_start_matches(cs.as_slice())),
            None => Value::from(s.trim_start()),
        },
        "rstrip" => match chars_arg(0) {
            Some(cs) => Value::from(s.trim_end_matches(cs.as_slice())),
            None => Value::from(s.trim_end()),
        },
        "lower" => Value::from(s.to_lowercase()),
        "upper" => Value::from(s.to_uppercase()),
        "startswith" => Value::from(arg(0).is_some_and(|p| s.starts_with(p))),
        "endswith" => Value::from(arg(0).is_some_and(|p| s.ends_with(p))),
        "split" => match arg(0) {
            Some(sep) if !sep.is_empty() => {
                Value::from(s.split(sep).map(str::to_owned).collect::<Vec<String>>())
            }
            _ => Value::from(
                s.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<String>>(),
            ),
        },
        "replace" => match (arg(0), arg(1)) {
            (Some(from), Some(to)) => Value::from(s.replace(from, to)),
            _ => return Err(minijinja::Error::from(ErrorKind::MissingArgument)),
        },
        _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(out)
}

/// What the model is fed for one prediction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedInput {
    /// The rendered conversation, cut before the last end-of-turn marker.
    pub text: String,
    /// Token ids (at most [`MAX_HISTORY_TOKENS`], the most recent ones).
    pub input_ids: Vec<i64>,
}

/// Chat template plus tokenizer: turns a conversation into model input.
pub struct Preprocessor {
    template: ChatTemplate,
    tokenizer: tokenizers::Tokenizer,
    normalize: bool,
    max_tokens: usize,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("template", &self.template)
            .field("normalize", &self.normalize)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

/// Why a conversation could not be turned into model input.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PreprocessError {
    /// The chat template failed to render.
    #[error("chat template failed: {0}")]
    Template(String),
    /// The tokenizer failed.
    #[error("tokenizer failed: {0}")]
    Tokenize(String),
}

impl Preprocessor {
    /// A preprocessor from the contents of `tokenizer.json` and `tokenizer_config.json`.
    ///
    /// `normalize` turns on [`normalize_text`] for every message.
    pub fn from_bytes(
        tokenizer_json: &[u8],
        tokenizer_config_json: &str,
        normalize: bool,
    ) -> Result<Self, LoadError> {
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| LoadError::Tokenizer(e.to_string()))?;
        // Truncation is ours (left side, MAX_HISTORY_TOKENS); the file's settings must not
        // cut or pad the sequence first.
        tokenizer
            .with_truncation(None)
            .map_err(|e| LoadError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let template = ChatTemplate::from_tokenizer_config(tokenizer_config_json)?;
        Ok(Self {
            template,
            tokenizer,
            normalize,
            max_tokens: MAX_HISTORY_TOKENS,
        })
    }

    /// Whether messages are normalized before templating.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The text the model reads for `turns` (see the module docs), or `None` when no turn has
    /// text (before normalization).
    pub fn format(&self, turns: &[ChatTurn]) -> Result<Option<String>, PreprocessError> {
        let merged = merge_turns(turns, self.normalize);
        if merged.is_empty() {
            return Ok(None);
        }
        let mut text = self.template.render(&merged)?;
        if let Some(ix) = text.rfind(EOU_MARKER) {
            text.truncate(ix);
        }
        Ok(Some(text))
    }

    /// Formats and tokenizes `turns`; `None` when no turn has text (before normalization).
    pub fn prepare(&self, turns: &[ChatTurn]) -> Result<Option<PreparedInput>, PreprocessError> {
        let Some(text) = self.format(turns)? else {
            return Ok(None);
        };
        let encoding = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| PreprocessError::Tokenize(e.to_string()))?;
        let ids = encoding.get_ids();
        let start = ids.len().saturating_sub(self.max_tokens);
        let input_ids = ids[start..].iter().map(|&id| i64::from(id)).collect();
        Ok(Some(PreparedInput { text, input_ids }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML.into(), serde_json::Map::new()).unwrap()
    }

    #[test]
    fn normalization_matches_reference_rules() {
        assert_eq!(normalize_text("Hello, World!"), "hello world");
        assert_eq!(normalize_text("don't   stop -- now"), "don't stop -- now");
        assert_eq!(normalize_text("ＡＢＣ　１２３"), "abc 123"); // NFKC full-width
        assert_eq!(normalize_text("你好，世界。"), "你好世界");
        assert_eq!(normalize_text("«Bonjour» — ça va ?"), "bonjour ça va");
        assert_eq!(normalize_text("\t\n "), "");
        assert_eq!(normalize_text("ΟΔΟΣ"), "οδος");
    }

    #[test]
    fn merges_adjacent_same_role_and_keeps_emptied_turns() {
        let turns = vec![
            ChatTurn::new(TurnRole::Assistant, "Hi!"),
            ChatTurn::new(TurnRole::User, "I want"),
            ChatTurn::new(TurnRole::User, "..."),
            ChatTurn::new(TurnRole::User, "a TABLE."),
            ChatTurn::new(TurnRole::Assistant, ""),
            ChatTurn::new(TurnRole::Assistant, "Sure."),
            ChatTurn::new(TurnRole::User, "?"),
        ];
        let merged = merge_turns(&turns, true);
        assert_eq!(
            merged,
            vec![
                ChatTurn::new(TurnRole::Assistant, "hi"),
                ChatTurn::new(TurnRole::User, "i want  a table"),
                ChatTurn::new(TurnRole::Assistant, "sure"),
                ChatTurn::new(TurnRole::User, ""),
            ]
        );
        let raw = merge_turns(&turns, false);
        assert_eq!(raw[1].text, "I want ... a TABLE.");
    }

    #[test]
    fn renders_chatml_like_transformers() {
        let out = chatml()
            .render(&[
                ChatTurn::new(TurnRole::User, "hello"),
                ChatTurn::new(TurnRole::Assistant, "hi there"),
            ])
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi there<|im_end|>\n"
        );
    }

    #[test]
    fn template_sees_special_tokens_and_python_methods() {
        let mut special = serde_json::Map::new();
        special.insert("bos_token".into(), "<s>".into());
        let tpl = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}{% if m.content.startswith(' ') %}!{% endif %}{% endfor %}".into(),
            special,
        )
        .unwrap();
        let out = tpl
            .render(&[ChatTurn::new(TurnRole::User, " ab ")])
            .unwrap();
        assert_eq!(out, "<s>AB!");
    }

    #[test]
    fn raise_exception_fails_rendering() {
        let tpl = ChatTemplate::new(
            "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('user first') }}{% endif %}ok".into(),
            serde_json::Map::new(),
        )
        .unwrap();
        assert_eq!(
            tpl.render(&[ChatTurn::new(TurnRole::User, "x")]).unwrap(),
            "ok"
        );
        let err = tpl
            .render(&[ChatTurn::new(TurnRole::Assistant, "x")])
            .unwrap_err();
        assert!(err.to_string().contains("user first"), "{err}");
    }

    #[test]
    fn reads_template_variants_from_config() {
        let cfg = serde_json::json!({
            "eos_token": {"content": "<|im_end|>", "special": true},
            "chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "{{ eos_token }}"}]
        });
        let tpl = ChatTemplate::from_tokenizer_config(&cfg.to_string()).unwrap();
        assert_eq!(tpl.render(&[]).unwrap(), "<|im_end|>");
        assert!(ChatTemplate::from_tokenizer_config("{}").is_err());
        assert!(ChatTemplate::from_tokenizer_config("[").is_err());
        assert!(ChatTemplate::from_tokenizer_config(r#"{"chat_template": "{% for %}"}"#).is_err());
    }

    /// A Qwen2.5-style template (system default, tools branch, `tool_calls` checks, whitespace
    /// control): the format the multilingual model's tokenizer uses.
    const QWEN_STYLE: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- for tool in tools %}
        {{- "\n" }}{{- tool | tojson }}
    {%- endfor %}
    {{- '<|im_end|>\n' }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- for tool_call in message.tool_calls %}
            {{- '\n<tool_call>\n' + tool_call.name + '\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

    /// A SmolLM-style template (Jinja without whitespace control, relies on `trim_blocks`).
    const SMOL_STYLE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}\n{% if add_generation_prompt %}\n{{ '<|im_start|>assistant\n' }}\n{% endif %}\n";

    #[test]
    fn renders_hugging_face_style_templates() {
        let turns = [
            ChatTurn::new(TurnRole::Assistant, "hi how can i help"),
            ChatTurn::new(TurnRole::User, "a table for two"),
        ];
        let qwen = ChatTemplate::new(QWEN_STYLE.into(), serde_json::Map::new())
            .unwrap()
            .render(&turns)
            .unwrap();
        assert_eq!(
            qwen,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>assistant\nhi how can i help<|im_end|>\n<|im_start|>user\na table for two<|im_end|>\n"
        );
        let smol = ChatTemplate::new(SMOL_STYLE.into(), serde_json::Map::new())
            .unwrap()
            .render(&turns)
            .unwrap();
        assert_eq!(
            smol,
            "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>assistant\nhi how can i help<|im_end|>\n<|im_start|>user\na table for two<|im_end|>\n"
        );
    }

    #[test]
    fn keeps_last_six_text_messages() {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::System, "be nice");
        for i in 0..8 {
            let role = if i % 2 == 0 {
                ChatRole::User
            } else {
                ChatRole::Assistant
            };
            ctx.add_message(role, format!("m{i}"));
        }
        ctx.add_message(ChatRole::User, "");
        let turns = turns_from_chat_ctx(&ctx);
        let texts: Vec<&str> = turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, vec!["m2", "m3", "m4", "m5", "m6", "m7"]);
    }
}
