//! Speech creation in the loop: `say`, `generate_reply`, the reply to a user turn (with the
//! user-turn hook and limit), preemptive generation and realtime generations.

use std::time::Duration;

use super::super::agent::UserTurnExceeded;
use super::super::events::{SessionEvent, SpeechSource};
use super::super::generation::{self, ReplyRequest, SayRequest};
use super::super::realtime;
use super::super::session::ReplyOptions;
use super::super::speech_handle::{SpeechHandle, SpeechPriority};
use super::event_loop::{ActivityLoop, Preemptive};
use super::{ActivityEvent, EndOfTurnInfo, TurnHookDone};
use crate::llm::{ChatItem, ChatMessage, ChatRole};
use crate::metrics::{AgentMetrics, EouMetrics};

impl ActivityLoop {
    pub(super) fn say(&mut self, handle: SpeechHandle, request: SayRequest) {
        if !self.closed {
            let activity = self.activity.clone();
            let h = handle.clone();
            let step = handle.new_step();
            tokio::spawn(async move { generation::say_task(activity, h, step, request).await });
        }
        self.schedule(&handle, false);
    }

    pub(super) fn generate_reply(&mut self, handle: SpeechHandle, options: ReplyOptions) {
        if self.closed {
            self.schedule(&handle, true);
            return;
        }
        let session = self.session().clone();
        if let Some(text) = options.user_input.as_ref() {
            let mut msg = ChatMessage::new(ChatRole::User, text.clone());
            if session.realtime_link().is_none() {
                session.inner.video.attach_latest(&mut msg);
            }
            self.commit_user_message(msg);
        }
        if let Some(link) = session.realtime_link() {
            let step = handle.new_step();
            let (activity, h, rt) = (self.activity.clone(), handle.clone(), link.session.clone());
            tokio::spawn(async move {
                realtime::request_reply(activity, h, step, rt, options.instructions, true).await
            });
            self.schedule(&handle, true);
            return;
        }
        let base = match options.chat_ctx {
            Some(ctx) => ctx,
            None => self.agent().chat_ctx(),
        };
        let chat_ctx = self
            .activity
            .llm_context(&base, options.instructions.as_deref());
        let mut tools = self.activity.all_tools();
        if let Some(names) = options.tools.as_ref() {
            tools.retain(|t| names.iter().any(|n| n == t.name()));
        }
        self.spawn_reply(
            &handle,
            ReplyRequest {
                chat_ctx,
                tools,
                tool_choice: options.tool_choice,
            },
        )
        .detach();
        self.schedule(&handle, true);
    }

    /// A final transcript arrived before the turn ended: start the reply early.
    pub(super) fn on_preemptive_generation(&mut self, transcript: &str, speech_duration: Duration) {
        let opts = self.activity.preemptive_options();
        if !opts.enabled || transcript.trim().is_empty() {
            return;
        }
        if self.agent().llm().is_none() && self.session().llm().is_none() {
            return;
        }
        if speech_duration > opts.max_speech_duration {
            return;
        }
        if self
            .current_speech()
            .is_some_and(|s| !s.done() && !s.allow_interruptions())
        {
            return;
        }
        if self.closed || self.preemptive_attempts >= opts.max_retries {
            return;
        }
        if self
            .preemptive
            .as_ref()
            .is_some_and(|p| p.transcript == transcript)
        {
            return;
        }
        self.discard_preemptive();
        self.preemptive_attempts += 1;
        let turn_ctx = self.agent().chat_ctx();
        let mut ctx = turn_ctx.clone();
        ctx.add_message(ChatRole::User, transcript);
        let tools = self.activity.all_tools();
        let tool_names = tools.iter().map(|t| t.name().to_string()).collect();
        // Announced (SpeechCreated) only if the turn uses it.
        let handle = SpeechHandle::new(
            self.activity.allow_interruptions(None),
            SpeechPriority::Normal,
        );
        let task = self.spawn_reply(
            &handle,
            ReplyRequest {
                chat_ctx: self.activity.llm_context(&ctx, None),
                tools,
                tool_choice: None,
            },
        );
        self.preemptive = Some(Preemptive {
            handle,
            transcript: transcript.to_string(),
            turn_ctx,
            tool_names,
            task,
        });
    }

    /// Recognition ended the user's turn (one turn at a time: the next waits for this one's
    /// hook).
    pub(super) fn on_end_of_turn(&mut self, info: EndOfTurnInfo) {
        if self.closed {
            return;
        }
        // A session hook (telephony's AMD on a machine) takes the turn: recorded, not answered.
        if self.session().inner.hooks.takes_user_turn(&info.transcript) {
            self.discard_preemptive();
            self.commit_user_message(ChatMessage::new(ChatRole::User, info.transcript));
            return;
        }
        if let Some(p) = self.paused.as_mut() {
            p.resume_at = None;
        }
        if self.turn_busy {
            self.pending_turns.push_back(info);
        } else {
            self.start_user_turn(info);
        }
    }

    /// Interrupts what the agent is saying, then runs the user-turn hook in a task.
    pub(super) fn start_user_turn(&mut self, info: EndOfTurnInfo) {
        let session = self.session().clone();
        let mut msg = ChatMessage::new(ChatRole::User, info.transcript.clone());
        // Live video: the latest sampled frame goes with the turn (pipeline LLMs; a realtime
        // model already received it).
        if session.realtime_link().is_none() {
            session.inner.video.attach_latest(&mut msg);
        }
        if let Some(current) = self.current_speech().filter(|s| !s.done()) {
            if !current.allow_interruptions() {
                self.commit_user_message(msg);
                self.discard_preemptive();
                return;
            }
            self.cancel_pause_and_interrupt();
            let _ = current.interrupt();
        }
        self.cancel_pause_and_interrupt();
        // Speeches still running tools in the background are superseded by the new turn.
        for s in self.speeches.clone() {
            if !s.done() {
                let _ = s.interrupt();
            }
        }
        self.spawn_turn_hook(info, msg);
    }

    /// The user-turn hook returned: record the turn, then answer it (or not).
    pub(super) fn on_turn_hook_done(&mut self, done: TurnHookDone) {
        let TurnHookDone {
            info,
            msg,
            turn_ctx,
            stop_response,
            hook_delay,
        } = done;
        if self.closed {
            self.turn_finished();
            return;
        }
        let session = self.session().clone();
        let text = msg.text_content().unwrap_or_default();
        self.commit_user_message(msg.clone());
        session.emit_metrics(AgentMetrics::Eou(EouMetrics {
            end_of_utterance_delay: info.end_of_utterance_delay,
            transcription_delay: info.transcription_delay,
            on_user_turn_completed_delay: hook_delay,
            speech_id: None,
        }));
        if stop_response || info.skip_reply {
            self.discard_preemptive();
            self.turn_finished();
            return;
        }

        let limit = session.options().turn_handling.user_turn_limit;
        self.preemptive_attempts = 0;
        self.turn_words += text.split_whitespace().count();
        self.turn_duration += info.speech_duration;
        if !self.turn_transcript.is_empty() {
            self.turn_transcript.push(' ');
        }
        self.turn_transcript.push_str(&text);
        let over = limit.max_words.is_some_and(|w| self.turn_words > w)
            || limit.max_duration.is_some_and(|d| self.turn_duration > d);
        self.pending_user_stop = info.stopped_speaking_at;
        self.pending_eou_delay = Some(info.end_of_utterance_delay);
        if over {
            let event = UserTurnExceeded {
                words: self.turn_words,
                duration: self.turn_duration,
                transcript: self.turn_transcript.clone(),
            };
            self.discard_preemptive();
            self.turn_words = 0;
            self.turn_duration = Duration::ZERO;
            self.turn_transcript.clear();
            let activity = self.activity.clone();
            tokio::spawn(async move {
                activity
                    .agent()
                    .behavior()
                    .on_user_turn_exceeded(activity.context(), event)
                    .await;
                activity.send(ActivityEvent::TurnExceededDone);
            });
            return;
        }
        self.turn_finished_with_reply(msg, turn_ctx, &text);
        self.turn_finished();
    }

    fn turn_finished_with_reply(
        &mut self,
        msg: ChatMessage,
        turn_ctx: crate::llm::ChatContext,
        text: &str,
    ) {
        let session = self.session().clone();
        if let Some(link) = session.realtime_link() {
            link.session.commit_audio();
            let handle = self.activity.new_speech(
                None,
                SpeechPriority::Normal,
                SpeechSource::GenerateReply,
                false,
            );
            let step = handle.new_step();
            let (activity, h, rt) = (self.activity.clone(), handle.clone(), link.session.clone());
            tokio::spawn(async move {
                realtime::request_reply(activity, h, step, rt, None, false).await
            });
            self.schedule(&handle, true);
            return;
        }
        let tools = self.activity.all_tools();
        if let Some(p) = self.preemptive.take() {
            let tool_names: Vec<String> = tools.iter().map(|t| t.name().to_string()).collect();
            if normalize(&p.transcript) == normalize(text)
                && p.turn_ctx.is_equivalent(&turn_ctx)
                && p.tool_names == tool_names
            {
                tracing::debug!(speech_id = %p.handle.id(), "using the preemptive generation");
                session.emit(SessionEvent::SpeechCreated {
                    user_initiated: false,
                    source: SpeechSource::GenerateReply,
                    speech_handle: p.handle.clone(),
                });
                // The generation task must outlive the preemptive slot now.
                p.task.detach();
                self.schedule(&p.handle, true);
                return;
            }
            tracing::debug!("preemptive generation discarded: the turn changed");
            p.handle.interrupt_force();
            p.handle.mark_done();
        }

        let handle = self.activity.new_speech(
            None,
            SpeechPriority::Normal,
            SpeechSource::GenerateReply,
            false,
        );
        let mut ctx = turn_ctx;
        ctx.push(ChatItem::Message(msg));
        self.spawn_reply(
            &handle,
            ReplyRequest {
                chat_ctx: self.activity.llm_context(&ctx, None),
                tools,
                tool_choice: None,
            },
        )
        .detach();
        self.schedule(&handle, true);
    }

    /// The realtime model started a reply by itself (server-side turn detection).
    pub(super) fn on_realtime_generation(
        &mut self,
        generation: crate::llm::realtime::GenerationCreated,
    ) {
        let Some(link) = self.session().realtime_link() else {
            return;
        };
        let handle = self.activity.new_speech(
            None,
            SpeechPriority::Normal,
            SpeechSource::GenerateReply,
            false,
        );
        let step = handle.new_step();
        let (activity, h, rt) = (self.activity.clone(), handle.clone(), link.session.clone());
        tokio::spawn(
            async move { realtime::play_generation(activity, h, step, rt, generation).await },
        );
        self.schedule(&handle, true);
    }
}

fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| c.is_ascii_punctuation())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
