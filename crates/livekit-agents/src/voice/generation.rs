//! Speech generation: LLM → text transforms → TTS → audio output, with the transcript
//! synchronized to playout, interruption, and the tool loop.
//!
//! A reply step starts its LLM request at once (so a preemptive generation is ready early) but
//! plays only when the scheduler authorizes the speech. Playback and text run in one loop that
//! also watches for interruption: on interruption the output buffer is cleared within a frame,
//! the LLM and TTS streams are dropped, and the history gets only the text the user heard.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::activity::{Activity, ActivityEvent, FollowUp};
use super::agent::{AgentContext, ModelSettings};
use super::events::ErrorSource;
use super::nodes::{AudioFrameStream, TextStream};
use super::playout::{speak, AudioSource, Spoken};
use super::segments::{LlmText, Segmenter};
use super::session::SayText;
use super::speech_handle::SpeechHandle;
use super::tool_execution::ToolExecutor;
use crate::llm::chat_context::{new_item_id, now_secs};
use crate::llm::{FunctionCall, FunctionTool, ToolChoice};
use crate::metrics::{AgentMetrics, LlmMetrics};

/// One reply step's inputs.
pub(crate) struct ReplyRequest {
    /// The full context for the LLM (instructions included).
    pub chat_ctx: crate::llm::ChatContext,
    /// Tools the model may call.
    pub tools: Vec<FunctionTool>,
    /// Tool choice of this step.
    pub tool_choice: Option<ToolChoice>,
}

/// Where the LLM step records its time to first token (read when playback starts).
pub(crate) type TtftSlot = Arc<Mutex<Option<Duration>>>;

/// What `say` plays.
pub(crate) struct SayRequest {
    pub text: SayText,
    pub audio: Option<AudioFrameStream>,
    pub add_to_chat_ctx: bool,
}

pub(crate) async fn say_task(
    activity: Activity,
    handle: SpeechHandle,
    step: u32,
    request: SayRequest,
) {
    if !handle.wait_for_authorization(step).await {
        activity.send(ActivityEvent::SpeechFinished(handle));
        return;
    }
    if handle.allow_interruptions() {
        tokio::select! {
            _ = activity.session().wait_user_silent() => {}
            _ = handle.wait_interrupted() => {}
        }
    }
    let text: TextStream = match request.text {
        SayText::Text(t) => futures::stream::once(async move { t }).boxed(),
        SayText::Stream(s) => s,
    };
    let spoken = speak(
        &activity,
        &handle,
        text,
        ModelSettings::default(),
        request.audio.map_or(AudioSource::Tts, AudioSource::Frames),
        None,
    )
    .await;
    if request.add_to_chat_ctx {
        activity.send(ActivityEvent::AssistantSpoken {
            handle: handle.clone(),
            spoken,
        });
    }
    activity.send(ActivityEvent::SpeechFinished(handle));
}

/// One generation step of `handle`; its tools' results go back to the loop.
pub(crate) async fn pipeline_reply(
    activity: Activity,
    handle: SpeechHandle,
    step: u32,
    request: ReplyRequest,
) {
    let session = activity.session().clone();
    let ctx = activity.context();
    let settings = ModelSettings {
        tool_choice: request.tool_choice.clone(),
    };
    // Unbounded: one reply's text and tool calls, bounded by the LLM's `max_tokens` and the
    // 8 MiB SSE event cap; dropped with the step.
    let (text_tx, text_rx) = mpsc::unbounded_channel::<LlmText>();
    let (call_tx, call_rx) = mpsc::unbounded_channel::<FunctionCall>();
    let ttft: TtftSlot = Arc::default();
    let llm_task = AbortOnDropHandle::new(tokio::spawn(run_llm(
        ctx.clone(),
        request.chat_ctx.clone(),
        request.tools.clone(),
        settings.clone(),
        LlmOutputs {
            text: text_tx,
            calls: call_tx,
            ttft: ttft.clone(),
        },
        handle.clone(),
    )));

    // The text splits into segments at the LLM node's segment breaks; each is synthesized
    // and played on its own. Preemptive TTS (`preemptive_tts`): the first segment's synthesis
    // starts on the LLM output before the speech has the floor; dropped with this task when
    // the speech is discarded.
    let mut segmenter = Segmenter::spawn(&activity, handle.id(), &settings, text_rx);
    let preemptive = activity.preemptive_options();
    if preemptive.enabled && preemptive.preemptive_tts && session.audio_output().is_some() {
        segmenter.open(true);
    }

    if !handle.wait_for_authorization(step).await {
        drop(llm_task);
        activity.send(ActivityEvent::SpeechFinished(handle));
        return;
    }
    let tools = ToolExecutor::start(&activity, &handle, request.tools.clone(), call_rx);
    if handle.allow_interruptions() {
        tokio::select! {
            _ = session.wait_user_silent() => {}
            _ = handle.wait_interrupted() => {}
        }
    }

    segmenter.open(session.audio_output().is_some());
    let spoken = speak_segments(&activity, &handle, &mut segmenter, settings, ttft).await;
    activity.send(ActivityEvent::AssistantSpoken {
        handle: handle.clone(),
        spoken,
    });
    activity.send(ActivityEvent::StepPlayed {
        handle: handle.clone(),
        tools_running: tools.has_calls(),
    });

    // An interrupted request stops at once (it reports its usage as cancelled).
    let _ = llm_task.await;
    let results = tools.finish(&handle).await;
    if results.is_empty() {
        activity.send(ActivityEvent::SpeechFinished(handle));
        return;
    }
    activity.send(ActivityEvent::ToolsExecuted {
        handle,
        results,
        follow_up: FollowUp::Pipeline(request.tool_choice),
    });
}

/// Plays the segments of one step in order, each to its end (or the interruption); returns
/// what the user got of the whole step: one message, as the reference's.
async fn speak_segments(
    activity: &Activity,
    handle: &SpeechHandle,
    segments: &mut Segmenter,
    settings: ModelSettings,
    ttft: TtftSlot,
) -> Spoken {
    // The message is stamped when the reply got the floor (the reference's
    // `reply_started_at`): before the tool calls the LLM streams meanwhile.
    let mut spoken = Spoken {
        text: String::new(),
        interrupted: false,
        played: None,
        started_at: now_secs(),
    };
    loop {
        let segment = tokio::select! {
            biased;
            _ = handle.wait_interrupted() => {
                spoken.interrupted = true;
                break;
            }
            segment = segments.next() => match segment {
                Some(segment) => segment,
                None => break,
            },
        };
        let part = speak(
            activity,
            handle,
            segment.text,
            settings.clone(),
            segment.audio,
            Some(ttft.clone()),
        )
        .await;
        if !part.text.is_empty() {
            if !spoken.text.is_empty() {
                spoken.text.push(' ');
            }
            spoken.text.push_str(&part.text);
        }
        if let Some(played) = part.played {
            spoken.played = Some(spoken.played.unwrap_or_default().saturating_add(played));
        }
        if part.interrupted {
            spoken.interrupted = true;
            break;
        }
    }
    spoken
}

/// Where one LLM step's output goes.
struct LlmOutputs {
    text: mpsc::UnboundedSender<LlmText>,
    calls: mpsc::UnboundedSender<FunctionCall>,
    ttft: TtftSlot,
}

async fn run_llm(
    ctx: AgentContext,
    chat_ctx: crate::llm::ChatContext,
    tools: Vec<FunctionTool>,
    settings: ModelSettings,
    out: LlmOutputs,
    handle: SpeechHandle,
) {
    let speech_id = handle.id().to_string();
    let LlmOutputs {
        text: text_tx,
        calls: call_tx,
        ttft: ttft_slot,
    } = out;
    let session = ctx.session.clone();
    let label = ctx
        .agent
        .llm()
        .or_else(|| session.llm())
        .map(|l| l.label())
        .unwrap_or_default();
    let started = Instant::now();
    if let Some(llm) = ctx.agent.llm().or_else(|| session.llm()) {
        let telemetry = &session.inner.telemetry;
        telemetry.llm_started(&speech_id, &llm.model(), &llm.provider());
    }
    let behavior = ctx.agent.behavior();
    let node = tokio::select! {
        biased;
        _ = handle.wait_interrupted() => return,
        node = behavior.llm_node(ctx, chat_ctx, tools, settings) => node,
    };
    let mut stream = match node {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            session.report_error(ErrorSource::Llm, e, false);
            return;
        }
    };
    let mut metrics = LlmMetrics {
        label,
        speech_id: Some(speech_id),
        ..Default::default()
    };
    let mut got_first = false;
    let mut failed = false;
    loop {
        let item = tokio::select! {
            biased;
            _ = handle.wait_interrupted() => {
                // Dropping the stream cancels the request; what it used so far is reported.
                metrics.cancelled = true;
                break;
            }
            item = stream.next() => item,
        };
        let Some(item) = item else { break };
        match item {
            Ok(chunk) if chunk.is_flush() => {
                let _ = text_tx.send(LlmText::Flush);
            }
            Ok(chunk) => {
                if chunk.has_content() && !got_first {
                    got_first = true;
                    metrics.ttft = started.elapsed();
                    *ttft_slot.lock() = Some(metrics.ttft);
                }
                if metrics.request_id.is_empty() {
                    metrics.request_id = chunk.id.clone();
                }
                if let Some(delta) = chunk.delta {
                    if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                        let _ = text_tx.send(LlmText::Text(text));
                    }
                    for call in delta.tool_calls {
                        let _ = call_tx.send(FunctionCall {
                            id: new_item_id("item"),
                            call_id: call.call_id,
                            name: call.name,
                            arguments: call.arguments,
                            created_at: now_secs(),
                        });
                    }
                }
                if let Some(usage) = chunk.usage {
                    metrics.completion_tokens = usage.completion_tokens;
                    metrics.prompt_tokens = usage.prompt_tokens;
                    metrics.prompt_cached_tokens = usage.prompt_cached_tokens;
                    metrics.total_tokens = usage.total_tokens;
                }
            }
            Err(e) => {
                failed = true;
                session.report_error(ErrorSource::Llm, e, false);
                break;
            }
        }
    }
    metrics.duration = started.elapsed();
    let secs = metrics.duration.as_secs_f64();
    if secs > 0.0 {
        metrics.tokens_per_second = metrics.completion_tokens as f64 / secs;
    }
    drop(stream);
    let _ = failed;
    session.emit_metrics(AgentMetrics::Llm(metrics));
}
