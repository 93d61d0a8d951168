//! Chat template and tokenizer on the generated test tokenizer (`testdata/`), without ONNX.

#![allow(clippy::unwrap_used)]

use livekit_agents::llm::{ChatContext, ChatRole};
use livekit_plugins_turn_detector::preprocess::{
    turns_from_chat_ctx, ChatTurn, Preprocessor, TurnRole, MAX_HISTORY_TOKENS,
};

fn preprocessor(normalize: bool) -> Preprocessor {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v0.4.1-intl");
    Preprocessor::from_bytes(
        &std::fs::read(dir.join("tokenizer.json")).unwrap(),
        &std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap(),
        normalize,
    )
    .unwrap()
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
fn empty_or_punctuation_only_turns_give_no_input() {
    let p = preprocessor(true);
    assert_eq!(p.prepare(&[]).unwrap(), None);
    assert_eq!(
        p.prepare(&[ChatTurn::new(TurnRole::User, " ¿?¡! ")])
            .unwrap(),
        None
    );
}
