//! The realtime-model path: when the session's LLM is a [`RealtimeModel`], user audio goes
//! straight to the model's session, and each [`GenerationCreated`] (text + audio streams, tool
//! calls) is played through the same forwarding as a pipeline reply: scheduled as a
//! [`SpeechHandle`], synchronized transcript, interruption (then `interrupt` + `truncate` at the
//! played position), and the same tool machinery.
//!
//! The realtime session is opened once per [`AgentSession`] and survives agent handoffs (the new
//! agent's instructions, tools and context are pushed to it).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::task::AbortOnDropHandle;

use super::activity::{Activity, ActivityEvent, FollowUp};
use super::agent::ModelSettings;
use super::events::{ErrorSource, SessionEvent};
use super::playout::{speak, AudioSource};
use super::session::AgentSession;
use super::speech_handle::SpeechHandle;
use super::tool_execution::ToolExecutor;
use crate::llm::realtime::{
    GenerationCreated, RealtimeCapabilities, RealtimeEvent, RealtimeModel, RealtimeSession,
};
use crate::llm::{ChatMessage, ChatRole, FunctionCall};

/// The open realtime session of an [`AgentSession`].
pub(crate) struct RealtimeLink {
    pub session: Arc<dyn RealtimeSession>,
    pub capabilities: RealtimeCapabilities,
    _events: AbortOnDropHandle<()>,
}

impl RealtimeLink {
    /// Opens a session on `model` and starts dispatching its events to the active agent.
    pub(crate) async fn open(
        session: &AgentSession,
        model: &Arc<dyn RealtimeModel>,
    ) -> Result<Self, crate::types::ApiError> {
        let mut rt = model.session().await?;
        let events = rt.take_events();
        let rt: Arc<dyn RealtimeSession> = Arc::from(rt);
        let task = match events {
            Some(events) => tokio::spawn(dispatch_events(session.clone(), events)),
            None => tokio::spawn(async {}),
        };
        Ok(Self {
            session: rt,
            capabilities: model.capabilities(),
            _events: AbortOnDropHandle::new(task),
        })
    }
}

async fn dispatch_events(session: AgentSession, mut events: mpsc::Receiver<RealtimeEvent>) {
    while let Some(event) = events.recv().await {
        let Some(activity) = session.current_activity() else {
            continue;
        };
        match event {
            RealtimeEvent::GenerationCreated(generation) => {
                // Replies we asked for are handled by the caller of `generate_reply`.
                if !generation.user_initiated {
                    activity.send(ActivityEvent::RealtimeGeneration(generation));
                }
            }
            RealtimeEvent::InputSpeechStarted => {
                activity.send(ActivityEvent::RealtimeSpeechStarted)
            }
            RealtimeEvent::InputSpeechStopped { .. } => activity.send(ActivityEvent::EndOfSpeech),
            RealtimeEvent::InputAudioTranscriptionCompleted {
                transcript,
                is_final,
                ..
            } => {
                session.emit(SessionEvent::UserInputTranscribed {
                    transcript: transcript.clone(),
                    is_final,
                    speaker_id: None,
                    language: None,
                });
                if is_final && !transcript.trim().is_empty() {
                    activity.send(ActivityEvent::CommitUserMessage(ChatMessage::new(
                        ChatRole::User,
                        transcript,
                    )));
                }
            }
            RealtimeEvent::Usage {
                input_tokens,
                output_tokens,
                cached_tokens,
            } => {
                session.emit_metrics(crate::metrics::AgentMetrics::Llm(
                    crate::metrics::LlmMetrics {
                        label: "realtime".into(),
                        prompt_tokens: input_tokens,
                        completion_tokens: output_tokens,
                        prompt_cached_tokens: cached_tokens,
                        total_tokens: input_tokens + output_tokens,
                        ..Default::default()
                    },
                ));
            }
            RealtimeEvent::Error { error, recoverable } => {
                session.report_error(ErrorSource::RealtimeModel, error, recoverable);
            }
        }
    }
}

/// Pushes the agent's instructions, tools and context to the realtime session.
pub(crate) async fn sync_agent(activity: &Activity, rt: &Arc<dyn RealtimeSession>) {
    let session = activity.session();
    let agent = activity.agent();
    let tools: Vec<_> = activity
        .all_tools()
        .iter()
        .map(|t| t.definition().clone())
        .collect();
    let results = [
        rt.update_instructions(&agent.instructions()).await,
        rt.update_tools(&tools).await,
        rt.update_chat_ctx(&agent.chat_ctx()).await,
    ];
    for r in results {
        if let Err(e) = r {
            session.report_error(ErrorSource::RealtimeModel, e, true);
        }
    }
}

/// Asks the model for a reply and plays it on `handle` (step `step`). Boxed: tool replies make
/// this recursive.
pub(crate) fn request_reply(
    activity: Activity,
    handle: SpeechHandle,
    step: u32,
    rt: Arc<dyn RealtimeSession>,
    instructions: Option<String>,
    sync_context: bool,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        if sync_context {
            if let Err(e) = rt.update_chat_ctx(&activity.agent().chat_ctx()).await {
                activity
                    .session()
                    .report_error(ErrorSource::RealtimeModel, e, true);
            }
        }
        match rt.generate_reply(instructions.as_deref()).await {
            Ok(generation) => play_generation(activity, handle, step, rt, generation).await,
            Err(e) => {
                activity
                    .session()
                    .report_error(ErrorSource::RealtimeModel, e, false);
                activity.send(ActivityEvent::SpeechFinished(handle));
            }
        }
    })
}

/// Plays one realtime generation on `handle`, then runs its tools.
pub(crate) async fn play_generation(
    activity: Activity,
    handle: SpeechHandle,
    step: u32,
    rt: Arc<dyn RealtimeSession>,
    generation: GenerationCreated,
) {
    let GenerationCreated {
        mut message_stream,
        mut function_stream,
        ..
    } = generation;
    // Tool calls are collected from the start; they run once the speech is scheduled.
    let (call_tx, call_rx) = mpsc::unbounded_channel::<FunctionCall>();
    let forward_calls = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(call) = function_stream.recv().await {
            let _ = call_tx.send(call);
        }
    }));
    if !handle.wait_for_authorization(step).await {
        rt.interrupt();
        activity.send(ActivityEvent::SpeechFinished(handle));
        return;
    }
    let session = activity.session().clone();
    let tools = ToolExecutor::start(&activity, &handle, activity.all_tools(), call_rx);
    let ctx = activity.context();
    let behavior = activity.agent().behavior();
    // Half-cascade: a model that answers in text (no audio output) is voiced by the agent's
    // or the session's TTS, as the reference does.
    let model_audio = session
        .realtime_link()
        .is_none_or(|l| l.capabilities.audio_output);
    let voice_with_tts =
        !model_audio && (activity.agent().tts().is_some() || session.tts().is_some());
    loop {
        let message = tokio::select! {
            biased;
            _ = handle.wait_interrupted() => None,
            m = message_stream.recv() => m,
        };
        let Some(message) = message else { break };
        let text = ReceiverStream::new(message.text_stream).boxed();
        let audio = if voice_with_tts {
            None
        } else {
            Some(
                behavior
                    .realtime_audio_output_node(
                        ctx.clone(),
                        ReceiverStream::new(message.audio_stream).boxed(),
                        ModelSettings::default(),
                    )
                    .await,
            )
        };
        let spoken = speak(
            &activity,
            &handle,
            text,
            ModelSettings::default(),
            audio.map_or(AudioSource::Tts, AudioSource::Frames),
            None,
        )
        .await;
        let interrupted = spoken.interrupted;
        let (played, text) = (spoken.played, spoken.text.clone());
        activity.send(ActivityEvent::AssistantSpoken {
            handle: handle.clone(),
            spoken,
        });
        if interrupted {
            rt.interrupt();
            // Only the model's own audio can be truncated at the played position.
            let truncate = model_audio && activity_caps_truncation(&session);
            if let (true, Some(played)) = (truncate, played) {
                let ms = played.as_millis().min(u64::MAX as u128) as u64;
                if let Err(e) = rt.truncate(&message.message_id, ms, Some(&text)).await {
                    session.report_error(ErrorSource::RealtimeModel, e, true);
                }
            }
            break;
        }
    }
    activity.send(ActivityEvent::StepPlayed {
        handle: handle.clone(),
        tools_running: tools.has_calls(),
    });
    if !handle.interrupted() {
        // Let the remaining calls arrive.
        let _ = forward_calls.await;
    }
    let results = tools.finish(&handle).await;
    if results.is_empty() {
        activity.send(ActivityEvent::SpeechFinished(handle));
        return;
    }
    // The same tail as a pipeline step (in the activity loop): record, answer, hand off.
    activity.send(ActivityEvent::ToolsExecuted {
        handle,
        results,
        follow_up: FollowUp::Realtime(rt),
    });
}

fn activity_caps_truncation(session: &AgentSession) -> bool {
    session
        .realtime_link()
        .is_some_and(|l| l.capabilities.message_truncation)
}
