//! The default pipeline nodes. An [`AgentBehavior`](super::AgentBehavior) override can call these
//! after (or before) doing its own work, so overriding one node never means re-implementing
//! another.

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::agent::{AgentContext, ModelSettings};
use crate::audio::AudioFrame;
use crate::llm::{ChatChunk, ChatContext, ChatRequest, FunctionTool};
use crate::stt::SpeechEvent;
use crate::tts::SynthesizedAudio;
use crate::types::{ApiError, TimedString};

/// Audio frames into a node.
pub type AudioFrameStream = BoxStream<'static, AudioFrame>;
/// STT node output.
pub type SpeechEventStream = BoxStream<'static, Result<SpeechEvent, ApiError>>;
/// LLM node output.
pub type LlmChunkStream = BoxStream<'static, Result<ChatChunk, ApiError>>;
/// Text into the TTS and transcription nodes.
pub type TextStream = BoxStream<'static, String>;
/// TTS node output.
pub type SynthesizedStream = BoxStream<'static, Result<SynthesizedAudio, ApiError>>;

/// Streams `audio` into the agent's STT (or the session's). `Ok(None)` without an STT.
///
/// Non-streaming STTs must be wrapped in a streaming adapter (VAD segmentation) before they are
/// given to the session.
pub async fn default_stt_node(
    ctx: AgentContext,
    mut audio: AudioFrameStream,
    _settings: ModelSettings,
) -> Result<Option<SpeechEventStream>, ApiError> {
    let Some(stt) = ctx.agent.stt().or_else(|| ctx.session.stt()) else {
        return Ok(None);
    };
    let mut stream = stt.stream(None, ctx.session.options().conn_options)?;
    let input = stream.input_handle();
    let pump = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(frame) = audio.next().await {
            input.push_frame(frame);
        }
    }));
    Ok(Some(
        futures::stream::poll_fn(move |cx| {
            let _keep = &pump;
            stream.poll_next_unpin(cx)
        })
        .boxed(),
    ))
}

/// Sends the context and tools to the agent's LLM (or the session's). `Ok(None)` without an LLM.
pub async fn default_llm_node(
    ctx: AgentContext,
    chat_ctx: ChatContext,
    tools: Vec<FunctionTool>,
    settings: ModelSettings,
) -> Result<Option<LlmChunkStream>, ApiError> {
    let Some(llm) = ctx.agent.llm().or_else(|| ctx.session.llm()) else {
        return Ok(None);
    };
    let mut request = ChatRequest::new(chat_ctx);
    request.tools = tools.iter().map(|t| t.definition().clone()).collect();
    request.tool_choice = if request.tools.is_empty() {
        None
    } else {
        settings.tool_choice
    };
    request.conn = ctx.session.options().conn_options;
    Ok(Some(llm.chat(request).boxed()))
}

/// Synthesizes `text` with the agent's TTS (or the session's). Streaming providers get the text
/// as it comes; others are called once per sentence. `Ok(None)` without a TTS.
pub async fn default_tts_node(
    ctx: AgentContext,
    mut text: TextStream,
    _settings: ModelSettings,
) -> Result<Option<SynthesizedStream>, ApiError> {
    let Some(tts) = ctx.agent.tts().or_else(|| ctx.session.tts()) else {
        return Ok(None);
    };
    let conn = ctx.session.options().conn_options;
    let (tx, rx) = mpsc::channel::<Result<SynthesizedAudio, ApiError>>(64);
    if tts.capabilities().streaming {
        let mut stream = tts.stream(conn)?;
        let task = tokio::spawn(async move {
            let mut text_open = true;
            loop {
                tokio::select! {
                    chunk = text.next(), if text_open => match chunk {
                        Some(chunk) => stream.push_text(chunk),
                        None => {
                            text_open = false;
                            stream.end_input();
                        }
                    },
                    audio = stream.next_audio() => match audio {
                        Some(item) => {
                            if tx.send(item).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        return Ok(Some(forward_with_task(rx, task)));
    }
    // Sentence by sentence: a private stand-in for `tts::StreamAdapter` (sentence tokenizer +
    // `synthesize`), emitting one timed string per sentence like the reference adapter.
    let task = tokio::spawn(async move {
        let mut pending = String::new();
        let mut elapsed = 0.0f64;
        let mut ended = false;
        while !ended {
            match text.next().await {
                Some(chunk) => pending.push_str(&chunk),
                None => ended = true,
            }
            let sentences = if ended {
                let rest = std::mem::take(&mut pending);
                if rest.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![rest]
                }
            } else {
                take_sentences(&mut pending)
            };
            for sentence in sentences {
                let mut audio = tts.synthesize(sentence.trim(), conn);
                let mut first = true;
                let start = elapsed;
                while let Some(item) = audio.next().await {
                    let item = item.map(|mut a| {
                        if first {
                            a.timed_words = vec![TimedString::new(sentence.clone(), start, start)];
                            first = false;
                        }
                        elapsed += a.frame.duration_secs();
                        a
                    });
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
            }
        }
    });
    Ok(Some(forward_with_task(rx, task)))
}

/// Cuts complete sentences (ending in `.`, `!` or `?` followed by whitespace) off `buf`.
fn take_sentences(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let bytes = buf.as_bytes();
        let cut = (0..bytes.len().saturating_sub(1)).find(|&i| {
            matches!(bytes[i], b'.' | b'!' | b'?') && bytes[i + 1].is_ascii_whitespace()
        });
        match cut {
            Some(i) => {
                let rest = buf.split_off(i + 2);
                out.push(std::mem::replace(buf, rest));
            }
            None => return out,
        }
    }
}

fn forward_with_task<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
    task: tokio::task::JoinHandle<()>,
) -> BoxStream<'static, T> {
    let guard = AbortOnDropHandle::new(task);
    futures::stream::poll_fn(move |cx| {
        let _keep = &guard;
        rx.poll_recv(cx)
    })
    .boxed()
}

/// Passes the transcript through.
pub async fn default_transcription_node(
    _ctx: AgentContext,
    text: TextStream,
    _settings: ModelSettings,
) -> TextStream {
    text
}

/// Passes realtime audio through.
pub async fn default_realtime_audio_output_node(
    _ctx: AgentContext,
    audio: AudioFrameStream,
    _settings: ModelSettings,
) -> AudioFrameStream {
    audio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_cut_at_terminal_punctuation() {
        let mut buf = String::from("Hello there. How are you? I am");
        let s = take_sentences(&mut buf);
        assert_eq!(
            s,
            vec!["Hello there. ".to_string(), "How are you? ".to_string()]
        );
        assert_eq!(buf, "I am");
    }
}
