//! Speech generation: LLM → text transforms → TTS → audio output, with the transcript
//! synchronized to playout, interruption, and the tool loop.
//!
//! A reply step starts its LLM request at once (so a preemptive generation is ready early) but
//! plays only when the scheduler authorizes the speech. Playback and text run in one loop that
//! also watches for interruption: on interruption the output buffer is cleared within a frame,
//! the LLM and TTS streams are dropped, and the history gets only the text the user heard.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::task::AbortOnDropHandle;

use super::activity::Activity;
use super::agent::{AgentContext, ModelSettings};
use super::events::{AgentState, ErrorSource, SessionEvent, SpeechSource};
use super::nodes::{AudioFrameStream, SynthesizedStream, TextStream};
use super::session::SayText;
use super::speech_handle::SpeechHandle;
use super::tool_execution::ToolExecutor;
use super::transcription::SegmentSync;
use crate::audio::resample::Resampler;
use crate::io::{PlaybackEvent, PlaybackFinished};
use crate::llm::chat_context::{new_item_id, now_secs};
use crate::llm::{ChatItem, ChatMessage, ChatRole, FunctionCall, FunctionTool, ToolChoice};
use crate::metrics::{AgentMetrics, LlmMetrics, TtsMetrics, TurnMetrics};
use crate::tokenize::{TextTransform, TransformChain};
use crate::tts::SynthesizedAudio;

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

/// What was spoken.
pub(crate) struct Spoken {
    /// The text the user heard (all of it unless interrupted).
    pub text: String,
    pub interrupted: bool,
    /// How much audio played (`None` without audio).
    pub played: Option<Duration>,
    /// When the speech started (wall clock, the message's `created_at`): an interrupted reply
    /// is placed before a message the user typed while it played.
    pub started_at: f64,
}

pub(crate) async fn say_task(
    activity: Activity,
    handle: SpeechHandle,
    step: u32,
    request: SayRequest,
) {
    if !handle.wait_for_authorization(step).await {
        finish_speech(&activity, &handle);
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
        request.audio,
        None,
    )
    .await;
    if request.add_to_chat_ctx {
        commit_assistant_message(&activity, &handle, &spoken);
    }
    finish_speech(&activity, &handle);
}

pub(crate) fn finish_speech(activity: &Activity, handle: &SpeechHandle) {
    handle.mark_generation_done();
    handle.mark_done();
    let session = activity.session();
    // Not while another speech waits for the floor (e.g. the reply to text typed during this
    // one): it sets `thinking` itself, and a transient `listening` would arm the away timer.
    if activity.current_speech().is_none_or(|s| s == *handle) && !activity.has_queued_speech() {
        session.set_agent_state(AgentState::Listening);
    }
}

pub(crate) fn commit_assistant_message(
    activity: &Activity,
    handle: &SpeechHandle,
    spoken: &Spoken,
) {
    if spoken.text.trim().is_empty() {
        return;
    }
    let mut msg = ChatMessage::new(ChatRole::Assistant, spoken.text.clone()).at(spoken.started_at);
    msg.interrupted = spoken.interrupted;
    let item = ChatItem::Message(msg);
    activity.agent().insert_chat_item(item.clone());
    handle.push_chat_item(item.clone());
    activity.session().insert_history_item(item);
}

/// One generation step of `handle`, and the tool loop after it.
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
    let (text_tx, text_rx) = mpsc::unbounded_channel::<String>();
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

    if !handle.wait_for_authorization(step).await {
        drop(llm_task);
        finish_speech(&activity, &handle);
        return;
    }
    let tools = ToolExecutor::start(&activity, &handle, request.tools.clone(), call_rx);
    session.set_agent_state(AgentState::Thinking);
    if handle.allow_interruptions() {
        tokio::select! {
            _ = session.wait_user_silent() => {}
            _ = handle.wait_interrupted() => {}
        }
    }

    let text = UnboundedReceiverStream::new(text_rx).boxed();
    let spoken = speak(&activity, &handle, text, settings, None, Some(ttft)).await;
    commit_assistant_message(&activity, &handle, &spoken);
    if !handle.interrupted() && tools.has_calls() {
        // The words played; the agent is busy with tools until they answer.
        session.set_agent_state(AgentState::Thinking);
    }
    handle.mark_generation_done();

    // An interrupted request stops at once (it reports its usage as cancelled).
    let _ = llm_task.await;
    let results = tools.finish(&handle).await;
    if results.is_empty() {
        finish_speech(&activity, &handle);
        return;
    }

    let (reply_required, handoff) = record_tool_results(&activity, &handle, results);
    if reply_required && !handle.interrupted() && session.is_running() {
        // A handoff drains this agent first: its reply to the tool output (the value a tool
        // returned with the new agent) plays before the new agent's `on_enter`, text only.
        schedule_tool_reply(&activity, &handle, request.tool_choice, handoff.is_some());
    } else {
        finish_speech(&activity, &handle);
    }
    if let Some(agent) = handoff {
        session.update_agent(agent);
    }
}

/// Schedules the next generation step of `handle`, answering the tool outputs just recorded.
pub(crate) fn schedule_tool_reply(
    activity: &Activity,
    handle: &SpeechHandle,
    tool_choice: Option<ToolChoice>,
    draining: bool,
) {
    let session = activity.session();
    // Reference rule: with max_tool_steps = 3, the 4th consecutive tool step forces a text-only
    // 5th generation.
    let max_steps_reached = handle.num_steps() > session.options().max_tool_steps;
    handle.increment_num_steps();
    let tool_choice = activity.follow_up_tool_choice(tool_choice, max_steps_reached || draining);
    let chat_ctx = activity.llm_context(&activity.agent().chat_ctx(), None);
    session.emit(SessionEvent::SpeechCreated {
        user_initiated: false,
        source: SpeechSource::ToolResponse,
        speech_handle: handle.clone(),
    });
    activity
        .spawn_reply(
            handle,
            ReplyRequest {
                chat_ctx,
                tools: activity.all_tools(),
                tool_choice,
            },
        )
        .detach();
    activity.schedule(handle);
}

/// Adds calls and outputs to the history and emits `FunctionToolsExecuted`; returns whether a
/// reply is needed and the agent to hand off to, if any.
pub(crate) fn record_tool_results(
    activity: &Activity,
    handle: &SpeechHandle,
    results: Vec<super::tool_execution::ToolResult>,
) -> (bool, Option<super::agent::Agent>) {
    let session = activity.session();
    let mut calls = Vec::new();
    let mut outputs = Vec::new();
    let mut reply_required = false;
    let mut handoff = None;
    for r in results {
        let call_item = ChatItem::FunctionCall(r.call.clone());
        let out_item = ChatItem::FunctionCallOutput(r.output.clone());
        // Placed by creation time: a call goes before what was said while its tool ran.
        for item in [call_item, out_item] {
            activity.agent().insert_chat_item(item.clone());
            handle.push_chat_item(item.clone());
            session.insert_history_item(item);
        }
        reply_required |= r.reply_required;
        if r.handoff.is_some() {
            handoff = r.handoff;
        }
        calls.push(r.call);
        outputs.push(r.output);
    }
    session.emit(SessionEvent::FunctionToolsExecuted {
        function_calls: calls,
        function_call_outputs: outputs,
    });
    (reply_required, handoff)
}

/// Where one LLM step's output goes.
struct LlmOutputs {
    text: mpsc::UnboundedSender<String>,
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
            session.report_error(ErrorSource::Llm, e.to_string(), false);
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
                        let _ = text_tx.send(text);
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
                session.report_error(ErrorSource::Llm, e.to_string(), false);
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

/// Plays (or shows, without audio) one segment of text; returns what the user got.
pub(crate) async fn speak(
    activity: &Activity,
    handle: &SpeechHandle,
    mut text: TextStream,
    settings: ModelSettings,
    audio_override: Option<AudioFrameStream>,
    llm_ttft: Option<TtftSlot>,
) -> Spoken {
    let spoken_at = now_secs();
    let session = activity.session().clone();
    let ctx = activity.context();
    let behavior = activity.agent().behavior();
    let transforms = session.options().tts_text_transforms.clone();
    let text_output = session.text_output();

    let (tts_tx, tts_rx) = mpsc::unbounded_channel::<String>();
    let (tr_tx, tr_rx) = mpsc::unbounded_channel::<String>();
    let mut transcript = behavior
        .transcription_node(
            ctx.clone(),
            UnboundedReceiverStream::new(tr_rx).boxed(),
            settings.clone(),
        )
        .await;

    let output = session.audio_output();
    let mut audio: Option<SynthesizedStream> = None;
    let mut tts_label = String::new();
    let mut aligned = false;
    if output.is_some() {
        if let Some(frames) = audio_override {
            audio = Some(frames.map(|frame| Ok(synthesized(frame))).boxed());
        } else {
            let tts = activity.agent().tts().or_else(|| session.tts());
            tts_label = tts.as_ref().map(|t| t.label()).unwrap_or_default();
            aligned = tts
                .as_ref()
                .is_some_and(|t| t.capabilities().aligned_transcript);
            let chain = Arc::new(Mutex::new(TransformChain::from_kinds(&transforms)));
            let tail = chain.clone();
            let tts_text = UnboundedReceiverStream::new(tts_rx)
                .map(move |t| chain.lock().push(&t))
                .chain(futures::stream::once(async move { tail.lock().flush() }))
                .filter(|t| futures::future::ready(!t.is_empty()))
                .boxed();
            match behavior
                .tts_node(ctx.clone(), tts_text, settings.clone())
                .await
            {
                Ok(stream) => audio = stream,
                Err(e) => session.report_error(ErrorSource::Tts, e.to_string(), false),
            }
        }
    }
    let (Some(output), Some(mut audio)) = (output, audio) else {
        return show_text_only(
            activity,
            handle,
            text,
            tr_tx,
            transcript,
            text_output,
            llm_ttft,
        )
        .await;
    };

    let use_timed = session.options().use_tts_aligned_transcript && aligned;
    let mut sync = SegmentSync::new(use_timed);
    // A synchronized output gets words as they are heard (through `sync`); an unsynchronized
    // one gets each piece as soon as the transcription node yields it.
    let paced_text = text_output.clone().filter(|t| t.synchronized());
    let immediate_text = text_output.clone().filter(|t| !t.synchronized());
    let mut events = output.subscribe();
    let mut tts_tx = Some(tts_tx);
    let mut tr_tx = Some(tr_tx);
    let (mut text_open, mut transcript_open, mut audio_open) = (true, true, true);
    let mut captured = false;
    let mut started_at: Option<Instant> = None;
    let mut next_due: Option<f64> = None;
    let mut finished: Option<PlaybackFinished> = None;
    let mut first_text_at: Option<Instant> = None;
    let mut tts_metrics = TtsMetrics {
        label: tts_label,
        streamed: true,
        speech_id: Some(handle.id().to_string()),
        ..Default::default()
    };
    let tts_started = Instant::now();
    let mut first_audio = false;
    let mut interrupted = false;
    let output_rate = output.sample_rate();
    let mut resampler: Option<Resampler> = None;
    // The transcript clock: playback time minus time spent paused.
    let mut paused_rx = activity.output_paused();
    let mut paused_since: Option<Instant> = (*paused_rx.borrow()).then(Instant::now);
    let mut paused_total = Duration::ZERO;
    let mut paused_open = true;
    // Frames waiting for the output, and the capture in progress. The capture is polled in the
    // loop below (not awaited inline) so an output that makes the writer wait (a full queue, a
    // paused device) never keeps the loop from seeing an interruption.
    let mut pending_frames: VecDeque<crate::audio::AudioFrame> = VecDeque::new();
    let mut capture: Option<CaptureFuture> = None;
    let mut flush_when_captured = false;

    loop {
        let due_at = started_at
            .zip(next_due)
            .filter(|_| paused_since.is_none())
            .map(|(s, t)| s + paused_total + super::recognition::provider_secs(t));
        let elapsed = |s: Instant, paused_total: Duration| {
            s.elapsed().saturating_sub(paused_total).as_secs_f64()
        };
        tokio::select! {
            biased;
            _ = handle.wait_interrupted() => {
                interrupted = true;
                break;
            }
            changed = paused_rx.changed(), if paused_open => {
                if changed.is_err() {
                    // The activity is gone; nothing will pause again.
                    paused_open = false;
                }
                let paused = *paused_rx.borrow_and_update();
                match (paused, paused_since) {
                    (true, None) => paused_since = Some(Instant::now()),
                    (false, Some(since)) => {
                        paused_total += since.elapsed();
                        paused_since = None;
                    }
                    _ => {}
                }
            }
            ev = events.recv() => match ev {
                Ok(PlaybackEvent::Started) => {
                    if started_at.is_none() {
                        started_at = Some(Instant::now());
                        let ttfb = first_audio.then_some(tts_metrics.ttfb);
                        on_playback_started(activity, handle, llm_ttft.as_ref(), ttfb);
                        next_due = release_due(&mut sync, 0.0, paced_text.as_deref()).await;
                    }
                }
                Ok(PlaybackEvent::Finished(f)) => {
                    finished = Some(f);
                    break;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            chunk = text.next(), if text_open => match chunk {
                Some(chunk) => {
                    first_text_at.get_or_insert_with(Instant::now);
                    tts_metrics.characters_count += chunk.chars().count();
                    if let Some(tx) = &tts_tx { let _ = tx.send(chunk.clone()); }
                    if let Some(tx) = &tr_tx { let _ = tx.send(chunk); }
                }
                None => {
                    text_open = false;
                    tts_tx = None;
                    tr_tx = None;
                }
            },
            piece = transcript.next(), if transcript_open => match piece {
                Some(piece) => {
                    if let Some(t) = immediate_text.as_deref() {
                        t.capture_text(&piece).await;
                    }
                    sync.push_text(&piece);
                    if let Some(s) = started_at {
                        next_due = release_due(&mut sync, elapsed(s, paused_total), paced_text.as_deref()).await;
                    }
                }
                None => {
                    transcript_open = false;
                    sync.end_text();
                }
            },
            _ = poll_capture(&mut capture), if capture.is_some() => {
                capture = next_capture(&output, &mut pending_frames);
                if capture.is_none() && flush_when_captured {
                    flush_when_captured = false;
                    output.flush();
                }
            }
            item = audio.next(), if audio_open && capture.is_none() => match item {
                Some(Ok(sa)) => {
                    if !first_audio {
                        first_audio = true;
                        let from = first_text_at.unwrap_or(tts_started);
                        tts_metrics.ttfb = Instant::now().saturating_duration_since(from);
                    }
                    tts_metrics.audio_duration += sa.frame.duration();
                    sync.push_audio(sa.frame.duration_secs(), &sa.timed_words);
                    pending_frames.extend(resample_for(&mut resampler, output_rate, sa.frame));
                    captured |= !pending_frames.is_empty();
                    capture = next_capture(&output, &mut pending_frames);
                }
                Some(Err(e)) => {
                    session.report_error(ErrorSource::Tts, e.to_string(), false);
                    audio_open = false;
                    sync.end_audio();
                    output.flush();
                }
                None => {
                    audio_open = false;
                    sync.end_audio();
                    if let Some(rs) = resampler.as_mut() {
                        pending_frames.extend(rs.flush());
                        captured |= !pending_frames.is_empty();
                    }
                    capture = next_capture(&output, &mut pending_frames);
                    if capture.is_none() {
                        output.flush();
                    } else {
                        flush_when_captured = true;
                    }
                }
            },
            _ = sleep_until_opt(due_at), if due_at.is_some() => {
                if let Some(s) = started_at {
                    next_due = release_due(&mut sync, elapsed(s, paused_total), paced_text.as_deref()).await;
                }
            }
        }
    }
    // A capture still waiting on the output is dropped (the output's contract: a dropped
    // capture queues nothing, or the whole frame).
    drop(capture);
    drop(audio);
    tts_metrics.duration = tts_started.elapsed();
    tts_metrics.cancelled = interrupted;
    session.emit_metrics(AgentMetrics::Tts(tts_metrics));

    let mut played = finished.map(|f| f.playback_position);
    let spoken_text = if interrupted {
        let position = if finished.is_some() {
            None
        } else if captured || !audio_open {
            output.clear_buffer();
            activity.resume_output();
            tokio::time::timeout(
                Duration::from_secs(1),
                crate::io::wait_for_finished(&mut events),
            )
            .await
            .ok()
            .flatten()
            .map(|f| f.playback_position)
        } else {
            // Nothing reached the output; it may still be paused for this speech.
            activity.resume_output();
            Some(Duration::ZERO)
        };
        if position.is_some() {
            played = position;
        }
        let heard = match position {
            Some(p) => sync.heard_text(p.as_secs_f64()),
            None => sync.full_text().trim().to_string(),
        };
        if let Some(t) = text_output.as_deref() {
            t.flush();
        }
        heard
    } else {
        // Played out: show the rest of the text.
        while transcript_open {
            match transcript.next().await {
                Some(piece) => {
                    if let Some(t) = immediate_text.as_deref() {
                        t.capture_text(&piece).await;
                    }
                    sync.push_text(&piece);
                }
                None => transcript_open = false,
            }
        }
        if let Some(t) = paced_text.as_deref() {
            let rest = sync.take_rest();
            if !rest.is_empty() {
                t.capture_text(&rest).await;
            }
        }
        if let Some(t) = text_output.as_deref() {
            t.flush();
        }
        sync.full_text().trim().to_string()
    };
    Spoken {
        text: spoken_text,
        interrupted,
        played,
        started_at: spoken_at,
    }
}

type CaptureFuture = futures::future::BoxFuture<'static, ()>;

/// Starts capturing the next pending frame, if any.
fn next_capture(
    output: &Arc<dyn crate::io::AudioOutput>,
    pending: &mut VecDeque<crate::audio::AudioFrame>,
) -> Option<CaptureFuture> {
    let frame = pending.pop_front()?;
    let output = output.clone();
    Some(Box::pin(async move { output.capture_frame(frame).await }))
}

async fn poll_capture(capture: &mut Option<CaptureFuture>) {
    match capture {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Converts `frame` to the output's rate (when it wants one); empty frames are dropped.
fn resample_for(
    resampler: &mut Option<Resampler>,
    output_rate: Option<u32>,
    frame: crate::audio::AudioFrame,
) -> Vec<crate::audio::AudioFrame> {
    if frame.is_empty() {
        return Vec::new();
    }
    let Some(rate) = output_rate.filter(|r| *r != frame.sample_rate) else {
        return vec![frame];
    };
    if resampler.is_none() {
        match Resampler::new(frame.sample_rate, rate, frame.num_channels) {
            Ok(rs) => *resampler = Some(rs),
            Err(e) => {
                tracing::warn!(error = %e, "cannot resample agent audio; playing it as is");
                return vec![frame];
            }
        }
    }
    match resampler.as_mut().map(|rs| rs.push(&frame)) {
        Some(Ok(frames)) => frames,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "resampling failed; dropping a frame");
            Vec::new()
        }
        None => vec![frame],
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends the words due at `elapsed` to the text output; returns when the next one is due.
async fn release_due(
    sync: &mut SegmentSync,
    elapsed: f64,
    text_output: Option<&dyn crate::io::TextOutput>,
) -> Option<f64> {
    let (due, next) = sync.take_due(elapsed);
    if let Some(t) = text_output {
        if !due.is_empty() {
            t.capture_text(&due).await;
        }
    }
    next
}

fn synthesized(frame: crate::audio::AudioFrame) -> SynthesizedAudio {
    SynthesizedAudio {
        frame,
        request_id: String::new(),
        segment_id: String::new(),
        is_final: false,
        delta_text: String::new(),
        timed_words: Vec::new(),
    }
}

fn on_playback_started(
    activity: &Activity,
    handle: &SpeechHandle,
    llm_ttft: Option<&TtftSlot>,
    tts_ttfb: Option<Duration>,
) {
    let session = activity.session();
    session.set_agent_state(AgentState::Speaking);
    activity.on_agent_speaking();
    let (user_stop, eou_delay) = activity.take_turn_timing();
    if let Some(stop) = user_stop {
        session.emit_metrics(AgentMetrics::Turn(TurnMetrics {
            speech_id: handle.id().to_string(),
            end_of_utterance_delay: eou_delay,
            llm_ttft: llm_ttft.and_then(|t| *t.lock()),
            tts_ttfb,
            e2e_latency: Instant::now().saturating_duration_since(stop),
        }));
    }
}

/// No audio output (or no TTS): the text goes straight to the text output.
async fn show_text_only(
    activity: &Activity,
    handle: &SpeechHandle,
    mut text: TextStream,
    tr_tx: mpsc::UnboundedSender<String>,
    mut transcript: TextStream,
    text_output: Option<std::sync::Arc<dyn crate::io::TextOutput>>,
    llm_ttft: Option<TtftSlot>,
) -> Spoken {
    let started_at = now_secs();
    let mut tr_tx = Some(tr_tx);
    let mut shown = String::new();
    let mut text_open = true;
    let mut interrupted = false;
    let mut started = false;
    loop {
        tokio::select! {
            biased;
            _ = handle.wait_interrupted() => {
                interrupted = true;
                break;
            }
            chunk = text.next(), if text_open => match chunk {
                Some(chunk) => {
                    if let Some(tx) = &tr_tx { let _ = tx.send(chunk); }
                }
                None => {
                    text_open = false;
                    tr_tx = None;
                }
            },
            piece = transcript.next() => match piece {
                Some(piece) => {
                    if !started {
                        started = true;
                        on_playback_started(activity, handle, llm_ttft.as_ref(), None);
                    }
                    if let Some(t) = text_output.as_deref() {
                        t.capture_text(&piece).await;
                    }
                    shown.push_str(&piece);
                }
                None => break,
            },
        }
    }
    if let Some(t) = text_output.as_deref() {
        t.flush();
    }
    Spoken {
        text: shown.trim().to_string(),
        interrupted,
        played: None,
        started_at,
    }
}
