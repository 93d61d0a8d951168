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
use crate::types::ApiError;

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
/// as it comes; others go through [`tts::StreamAdapter`](crate::tts::StreamAdapter) (one request
/// per sentence). `Ok(None)` without a TTS.
pub async fn default_tts_node(
    ctx: AgentContext,
    mut text: TextStream,
    _settings: ModelSettings,
) -> Result<Option<SynthesizedStream>, ApiError> {
    let Some(tts) = ctx.agent.tts().or_else(|| ctx.session.tts()) else {
        return Ok(None);
    };
    let conn = ctx.session.options().conn_options;
    let mut stream = if tts.capabilities().streaming {
        tts.stream(conn)?
    } else {
        // Sentence by sentence through `synthesize`.
        crate::tts::Tts::stream(&crate::tts::StreamAdapter::new(tts), conn)?
    };
    let (tx, rx) = mpsc::channel::<Result<SynthesizedAudio, ApiError>>(64);
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
    Ok(Some(forward_with_task(rx, task)))
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
