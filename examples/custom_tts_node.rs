//! A custom `tts_node`: rewrite how words are pronounced, then synthesize with the default node.
//!
//! The LLM writes "LiveKit", "SQL" or "nginx"; a TTS voice may read them badly. The agent's
//! `tts_node` rewrites those words into spellings the voice reads well ("Live Kit", "sequel",
//! "engine x") and passes the rewritten text to `nodes::default_tts_node`. Only the audio
//! changes: the transcript (and the chat history) keep the LLM's words.
//!
//! Text reaches the node in chunks that can split a word ("Live" + "Kit"), so the rewriter
//! holds back the unfinished last word of each chunk until the next chunk (or the end) shows
//! where it ends.
//!
//! Environment: `DEEPGRAM_API_KEY`, `OPENAI_API_KEY`, `CARTESIA_API_KEY`; for `dev`, `start` and
//! `connect` also `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (and the `room` feature).
//! Model files: `cargo run --example custom_tts_node -- download-files` (Silero VAD).
//!
//! ```text
//! cargo run --example custom_tts_node -- console --text --output-wav reply.wav
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use livekit_agents::cli;
use livekit_agents::types::ApiError;
use livekit_agents::voice::nodes::{self, SynthesizedStream, TextStream};
use livekit_agents::voice::{Agent, AgentBehavior, AgentContext, AgentSession, ModelSettings};
use livekit_agents::worker::{JobContext, WorkerOptions};
use livekit_plugins_cartesia as cartesia;
use livekit_plugins_deepgram as deepgram;
use livekit_plugins_openai as openai;

/// Words and how the voice should say them (matched case-insensitively, whole words only).
const PRONUNCIATIONS: &[(&str, &str)] = &[
    ("livekit", "Live Kit"),
    ("sql", "sequel"),
    ("nginx", "engine x"),
    ("api", "A P I"),
    ("kubernetes", "koo-ber-net-ees"),
];

/// Rewrites one word, keeping the punctuation around it ("LiveKit," → "Live Kit,").
fn pronounce_word(word: &str) -> String {
    let core = word.trim_matches(|c: char| !c.is_alphanumeric());
    if core.is_empty() {
        return word.to_string();
    }
    match PRONUNCIATIONS
        .iter()
        .find(|(written, _)| written.eq_ignore_ascii_case(core))
    {
        Some((_, spoken)) => word.replacen(core, spoken, 1),
        None => word.to_string(),
    }
}

/// Rewrites every complete word of `text` (words end at whitespace).
fn pronounce(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            out.push_str(&pronounce_word(&word));
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.push_str(&pronounce_word(&word));
    out
}

/// Applies [`pronounce`] to a stream of text chunks. The text after the last whitespace of a
/// chunk may be the start of a longer word, so it waits for the next chunk.
fn pronounce_stream(text: TextStream) -> TextStream {
    futures::stream::unfold(
        (text, String::new(), false),
        |(mut text, mut pending, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match text.next().await {
                    Some(chunk) => {
                        pending.push_str(&chunk);
                        let Some(cut) = pending.rfind(char::is_whitespace) else {
                            continue; // still inside one word
                        };
                        let cut = cut + pending[cut..].chars().next().map_or(0, char::len_utf8);
                        let rest = pending.split_off(cut);
                        let ready = pronounce(&pending);
                        return Some((ready, (text, rest, false)));
                    }
                    None if pending.is_empty() => return None,
                    None => {
                        let last = pronounce(&pending);
                        return Some((last, (text, String::new(), true)));
                    }
                }
            }
        },
    )
    .boxed()
}

/// The agent's nodes: only `tts_node` differs from the defaults.
struct Pronunciation;

#[async_trait]
impl AgentBehavior for Pronunciation {
    async fn tts_node(
        &self,
        ctx: AgentContext,
        text: TextStream,
        settings: ModelSettings,
    ) -> Result<Option<SynthesizedStream>, ApiError> {
        nodes::default_tts_node(ctx, pronounce_stream(text), settings).await
    }
}

#[cfg_attr(test, allow(dead_code))]
async fn entrypoint(ctx: JobContext) -> anyhow::Result<()> {
    let session = AgentSession::builder()
        .stt(Arc::new(deepgram::Stt::new(
            deepgram::SttOptions::default(),
        )?))
        .llm(Arc::new(openai::Llm::new(openai::LlmOptions::default())?))
        .tts(Arc::new(cartesia::Tts::new(
            cartesia::TtsOptions::default(),
        )?))
        .vad(examples::shared_vad(&ctx)?)
        .build();
    let agent = Agent::builder()
        .instructions(
            "You are a DevOps assistant who explains LiveKit, SQL, nginx and Kubernetes in short \
             spoken answers.",
        )
        .behavior(Pronunciation)
        .build();
    let io = ctx.session_io(&session).await?;
    session.start(agent, io).await?;
    Ok(())
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> ExitCode {
    livekit_plugins_silero::register_files();
    cli::run_app(WorkerOptions::new(entrypoint).with_prewarm(examples::prewarm_vad))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::{pronounce, pronounce_stream};

    #[test]
    fn rewrites_whole_words_and_keeps_punctuation() {
        assert_eq!(
            pronounce("Deploy LiveKit behind nginx, then query SQL."),
            "Deploy Live Kit behind engine x, then query sequel."
        );
        // Not inside other words.
        assert_eq!(pronounce("SQLite rapid"), "SQLite rapid");
    }

    #[tokio::test]
    async fn words_split_across_chunks_are_rewritten() {
        let chunks = ["Try Live", "Kit and ng", "inx", " today. Kubernetes"];
        let input = futures::stream::iter(chunks.map(String::from)).boxed();
        let spoken: String = pronounce_stream(input).collect::<Vec<_>>().await.concat();
        assert_eq!(spoken, "Try Live Kit and engine x today. koo-ber-net-ees");
    }
}
