//! Chat template and tokenizer on the generated test tokenizer (`testdata/`), without ONNX.

#![allow(clippy::unwrap_used)]

use livekit_agents::llm::{ChatContext, ChatRole};
use livekit_plugins_turn_detector::preprocess::{
    turns_from_chat_ctx, ChatTurn, Preprocessor, TurnRole, MAX_HISTORY_TOKENS,
};

fn testdata() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn preprocessor_with(tokenizer: &str, normalize: bool) -> Preprocessor {
    Preprocessor::from_bytes(
        &std::fs::read(testdata().join(tokenizer)).unwrap(),
        &std::fs::read_to_string(testdata().join("v0.4.1-intl/tokenizer_config.json")).unwrap(),
        normalize,
    )
    .unwrap()
}

fn preprocessor(normalize: bool) -> Preprocessor {
    preprocessor_with("v0.4.1-intl/tokenizer.json", normalize)
}

#[test]
fn formats_like_the_reference() {
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, "You are a booking assistant.");
    ctx.add_message(ChatRole::Assistant, "Hello! How can I help?");
    ctx.add_message(ChatRole::User, "I want");
    ctx.add_message(ChatRole::User, "a TABLE, please…");
    let turns = turns_from_chat_ctx(&ctx);
    let p = preprocessor(true);
    let prepared = p.prepare(&turns).unwrap().unwrap();
    // Normalized, merged, templated, and cut before the last <|im_end|> (the open user turn).
    assert_eq!(
        prepared.text,
        "<|im_start|>assistant\nhello how can i help<|im_end|>\n<|im_start|>user\ni want a table please"
    );
    // The same ids as the Python `tokenizers` package gives for this text (checked when the
    // test data was generated); the last one is "please".
    assert_eq!(
        prepared.input_ids,
        vec![2, 6, 44, 46, 47, 35, 48, 3, 2, 5, 35, 37, 40, 41, 12]
    );

    // Without normalization (punctuation and case kept, the tokenizer lower-cases).
    let raw = preprocessor(false).format(&turns).unwrap().unwrap();
    assert!(
        raw.ends_with("<|im_start|>user\nI want a TABLE, please…"),
        "{raw}"
    );
}

#[test]
fn long_history_is_cut_from_the_left() {
    let turns: Vec<ChatTurn> = (0..6)
        .map(|i| {
            let role = if i % 2 == 0 {
                TurnRole::User
            } else {
                TurnRole::Assistant
            };
            ChatTurn::new(role, "i want a table for two ".repeat(20))
        })
        .collect();
    let p = preprocessor(true);
    let full = p.format(&turns).unwrap().unwrap();
    let prepared = p.prepare(&turns).unwrap().unwrap();
    assert_eq!(prepared.input_ids.len(), MAX_HISTORY_TOKENS);
    assert_eq!(
        prepared.text, full,
        "the text is kept whole; only the ids are cut"
    );
    // The most recent tokens are kept: the end is "... for two".
    let two = *prepared.input_ids.last().unwrap();
    let for_ = prepared.input_ids[prepared.input_ids.len() - 2];
    assert_ne!(two, for_);
}

#[test]
fn only_empty_input_gives_no_input() {
    let p = preprocessor(true);
    assert_eq!(p.prepare(&[]).unwrap(), None);
    assert_eq!(
        p.prepare(&[ChatTurn::new(TurnRole::User, "")]).unwrap(),
        None
    );
    // Punctuation only: an empty, open user turn, as in the reference.
    let prepared = p
        .prepare(&[ChatTurn::new(TurnRole::User, " ¿?¡! ")])
        .unwrap()
        .unwrap();
    assert_eq!(prepared.text, "<|im_start|>user\n");
    assert_eq!(prepared.input_ids, vec![2, 5]);
}

#[derive(serde::Deserialize)]
struct GoldenMessage {
    role: String,
    content: String,
}

#[derive(serde::Deserialize)]
struct GoldenCase {
    name: String,
    messages: Vec<GoldenMessage>,
    text: String,
    input_ids: Vec<i64>,
    bpe_input_ids: Vec<i64>,
}

/// `testdata/golden_format.json` holds what the Python pipeline (`unicodedata`, `re`, Jinja2 as
/// `transformers` configures it, `tokenizers`) produces; see `testdata/generate.py`. The ids are
/// checked with the word-level test tokenizer and with a byte-level BPE tokenizer built like
/// Qwen2's (NFC, look-ahead split regex), the kind the real multilingual model uses.
#[test]
fn matches_the_python_pipeline() {
    let golden: Vec<GoldenCase> = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden_format.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(golden.len() >= 6);
    let p = preprocessor(true);
    let bpe = preprocessor_with("bpe/tokenizer.json", true);
    for case in golden {
        let mut ctx = ChatContext::new();
        for m in &case.messages {
            let role = match m.role.as_str() {
                "user" => ChatRole::User,
                "assistant" => ChatRole::Assistant,
                "system" => ChatRole::System,
                other => panic!("unexpected role {other}"),
            };
            ctx.add_message(role, m.content.clone());
        }
        let turns = turns_from_chat_ctx(&ctx);
        let prepared = p.prepare(&turns).unwrap().unwrap();
        assert_eq!(prepared.text, case.text, "text of case {}", case.name);
        assert_eq!(
            prepared.input_ids, case.input_ids,
            "ids of case {}",
            case.name
        );
        let prepared = bpe.prepare(&turns).unwrap().unwrap();
        assert_eq!(
            prepared.input_ids, case.bpe_input_ids,
            "BPE ids of case {}",
            case.name
        );
    }
}
