//! Speech creation: `say`, `generate_reply`, the reply to a user turn (with the user-turn hook and
//! limit), preemptive generation and realtime generations.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::super::agent::UserTurnExceeded;
use super::super::events::{SessionEvent, SpeechSource};
use super::super::generation::{self, ReplyRequest, SayRequest};
use super::super::realtime;
use super::super::session::{ReplyOptions, SayOptions, SayText};
use super::super::speech_handle::{SpeechHandle, SpeechPriority};
use super::{Activity, EndOfTurnInfo, Preemptive};
use crate::llm::{ChatContext, ChatItem, ChatMessage, ChatRole, FunctionTool, ToolChoice};
use crate::metrics::{AgentMetrics, EouMetrics};

impl Activity {
    /// Creates a speech and announces it (`SpeechCreated`): the one place speeches are made,
    /// with the agent's (or the session's) interruption setting unless `allow_interruptions`
    /// overrides it. (A preemptive generation's speech is announced when the turn uses it.)
    pub(crate) fn new_speech(
        &self,
        allow_interruptions: Option<bool>,
        priority: SpeechPriority,
        source: SpeechSource,
        user_initiated: bool,
    ) -> SpeechHandle {
        let handle = SpeechHandle::new(self.allow_interruptions(allow_interruptions), priority);
        self.inner.session.emit(SessionEvent::SpeechCreated {
            user_initiated,
            source,
            speech_handle: handle.clone(),
        });
        handle
    }

    // ---- speeches ----

    pub(crate) fn say(&self, text: SayText, options: SayOptions) -> SpeechHandle {
        let handle = self.new_speech(
            options.allow_interruptions,
            options.priority,
            SpeechSource::Say,
            true,
        );
        let request = SayRequest {
            text,
            audio: options.audio,
            add_to_chat_ctx: options.add_to_chat_ctx,
        };
        let this = self.clone();
        let h = handle.clone();
        let step = handle.new_step();
        tokio::spawn(async move { generation::say_task(this, h, step, request).await });
        self.schedule(&handle);
        handle
    }

    /// The tools of this agent plus the session's.
    pub(crate) fn all_tools(&self) -> Vec<FunctionTool> {
        let mut tools = self.inner.agent.tools();
        for t in self.inner.session.tools() {
            if !tools.iter().any(|x| x.name() == t.name()) {
                tools.push(t);
            }
        }
        self.mcp_servers().append_tools(&mut tools);
        crate::voice::agent::hide_on_enter_tools(&self.inner.agent, &mut tools);
        tools
    }

    /// The MCP servers in effect: the agent's if it has any, else the session's.
    fn mcp_servers(&self) -> &crate::mcp::ServerList {
        let own = self.inner.agent.mcp_servers();
        if own.is_empty() {
            &self.inner.session.inner.mcp_servers
        } else {
            own
        }
    }

    /// The context sent to the LLM: instructions first, then `items`, then per-reply
    /// instructions.
    pub(crate) fn llm_context(
        &self,
        base: &ChatContext,
        extra_instructions: Option<&str>,
    ) -> ChatContext {
        let mut ctx = ChatContext::new();
        let instructions = self.inner.agent.instructions();
        // Added only if missing (a caller-given context may already carry them).
        let present = base.items().iter().any(|i| {
            matches!(i, ChatItem::Message(m)
                if matches!(m.role, ChatRole::System | ChatRole::Developer)
                    && m.text_content().as_deref() == Some(instructions.as_str()))
        });
        if !instructions.is_empty() && !present {
            ctx.add_message(ChatRole::System, instructions);
        }
        for item in base.items() {
            ctx.push(item.clone());
        }
        if let Some(extra) = extra_instructions {
            ctx.add_message(ChatRole::System, extra);
        }
        ctx
    }

    pub(crate) fn generate_reply(
        &self,
        options: ReplyOptions,
        source: SpeechSource,
        user_initiated: bool,
    ) -> SpeechHandle {
        let mut options = options;
        // The reference: a reply requested from inside a tool defaults to no tool calls.
        if options.tool_choice.is_none() && crate::voice::tool_execution::in_tool() {
            options.tool_choice = Some(ToolChoice::None);
        }
        if let Some(text) = options.user_input.as_ref() {
            let mut msg = ChatMessage::new(ChatRole::User, text.clone());
            if self.inner.session.realtime_link().is_none() {
                self.inner.session.inner.video.attach_latest(&mut msg);
            }
            self.commit_user_message(msg);
        }
        let handle = self.new_speech(
            options.allow_interruptions,
            options.priority,
            source,
            user_initiated,
        );
        if let Some(link) = self.inner.session.realtime_link() {
            let step = handle.new_step();
            let (this, h, rt) = (self.clone(), handle.clone(), link.session.clone());
            tokio::spawn(async move {
                realtime::request_reply(this, h, step, rt, options.instructions, true).await
            });
            self.schedule(&handle);
            return handle;
        }
        let base = match options.chat_ctx {
            Some(ctx) => ctx,
            None => self.inner.agent.chat_ctx(),
        };
        let chat_ctx = self.llm_context(&base, options.instructions.as_deref());
        let mut tools = self.all_tools();
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
        self.schedule(&handle);
        handle
    }

    /// Starts a generation step of `handle` (the LLM starts now; playback waits for the
    /// scheduler).
    pub(crate) fn spawn_reply(
        &self,
        handle: &SpeechHandle,
        request: ReplyRequest,
    ) -> AbortOnDropHandle<()> {
        let step = handle.new_step();
        let this = self.clone();
        let h = handle.clone();
        let task = tokio::spawn(crate::voice::agent::keep_on_enter_scope(async move {
            generation::pipeline_reply(this, h, step, request).await
        }));
        // Dropping the guard cancels the step: a preemptive generation holds it until the turn
        // is committed (or discarded); other callers `detach()` it.
        AbortOnDropHandle::new(task)
    }

    pub(crate) fn commit_user_message(&self, msg: ChatMessage) {
        let item = ChatItem::Message(msg);
        self.inner.agent.push_chat_item(item.clone());
        self.inner.session.add_history_item(item);
    }

    /// A final transcript arrived before the turn ended: start the reply early.
    pub(crate) fn on_preemptive_generation(&self, transcript: &str, speech_duration: Duration) {
        let opts = self
            .inner
            .session
            .options()
            .turn_handling
            .preemptive_generation;
        if !opts.enabled || transcript.trim().is_empty() {
            return;
        }
        if self.inner.agent.llm().is_none() && self.inner.session.llm().is_none() {
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
        {
            let mut st = self.inner.state.lock();
            if st.scheduling_paused || st.closed || st.preemptive_attempts >= opts.max_retries {
                return;
            }
            if st
                .preemptive
                .as_ref()
                .is_some_and(|p| p.transcript == transcript)
            {
                return;
            }
            if let Some(old) = st.preemptive.take() {
                old.handle.interrupt_force();
                old.handle.mark_done();
            }
            st.preemptive_attempts += 1;
        }
        let turn_ctx = self.inner.agent.chat_ctx();
        let mut ctx = turn_ctx.clone();
        ctx.add_message(ChatRole::User, transcript);
        let tools = self.all_tools();
        let tool_names = tools.iter().map(|t| t.name().to_string()).collect();
        // Announced (SpeechCreated) only if the turn uses it.
        let handle = SpeechHandle::new(self.allow_interruptions(None), SpeechPriority::Normal);
        let task = self.spawn_reply(
            &handle,
            ReplyRequest {
                chat_ctx: self.llm_context(&ctx, None),
                tools,
                tool_choice: None,
            },
        );
        self.inner.state.lock().preemptive = Some(Preemptive {
            handle,
            transcript: transcript.to_string(),
            turn_ctx,
            tool_names,
            _task: task,
        });
    }

    /// Recognition ended the user's turn. Returns whether the turn was committed.
    pub(crate) fn on_end_of_turn(&self, info: EndOfTurnInfo) -> bool {
        if info.transcript.trim().is_empty() {
            return false;
        }
        let opts = self.inner.session.options().turn_handling.interruption;
        if opts.min_words > 0 {
            let speaking = self.current_speech().is_some_and(|s| !s.done());
            if speaking && info.transcript.split_whitespace().count() < opts.min_words {
                return false;
            }
        }
        {
            let mut st = self.inner.state.lock();
            if st.closed {
                return false;
            }
            if let Some(p) = st.paused.as_mut() {
                p.timer = None;
            }
        }
        let this = self.clone();
        tokio::spawn(async move { this.user_turn_completed(info).await });
        true
    }

    pub(super) async fn user_turn_completed(&self, info: EndOfTurnInfo) {
        let _guard = self.inner.turn_lock.lock().await;
        let mut msg = ChatMessage::new(ChatRole::User, info.transcript.clone());
        // Live video: the latest sampled frame goes with the turn (pipeline LLMs; a realtime
        // model already received it).
        if self.inner.session.realtime_link().is_none() {
            self.inner.session.inner.video.attach_latest(&mut msg);
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
        let background: Vec<SpeechHandle> = self
            .inner
            .state
            .lock()
            .speeches
            .iter()
            .filter(|s| !s.done())
            .cloned()
            .collect();
        for s in background {
            let _ = s.interrupt();
        }

        let mut turn_ctx = self.inner.agent.chat_ctx();
        let started = Instant::now();
        let result = self
            .inner
            .agent
            .behavior()
            .on_user_turn_completed(self.context(), &mut turn_ctx, &mut msg)
            .await;
        let hook_delay = started.elapsed();
        let text = msg.text_content().unwrap_or_default();
        self.commit_user_message(msg.clone());
        self.inner
            .session
            .emit_metrics(AgentMetrics::Eou(EouMetrics {
                end_of_utterance_delay: info.end_of_utterance_delay,
                transcription_delay: info.transcription_delay,
                on_user_turn_completed_delay: hook_delay,
                speech_id: None,
            }));
        if result.is_err() || info.skip_reply {
            self.discard_preemptive();
            return;
        }

        let limit = self.inner.session.options().turn_handling.user_turn_limit;
        let exceeded = {
            let mut st = self.inner.state.lock();
            st.preemptive_attempts = 0;
            st.turn_words += text.split_whitespace().count();
            st.turn_duration += info.speech_duration;
            if !st.turn_transcript.is_empty() {
                st.turn_transcript.push(' ');
            }
            st.turn_transcript.push_str(&text);
            let over = limit.max_words.is_some_and(|w| st.turn_words > w)
                || limit.max_duration.is_some_and(|d| st.turn_duration > d);
            over.then(|| UserTurnExceeded {
                words: st.turn_words,
                duration: st.turn_duration,
                transcript: st.turn_transcript.clone(),
            })
        };
        {
            let mut st = self.inner.state.lock();
            st.pending_user_stop = info.stopped_speaking_at;
            st.pending_eou_delay = Some(info.end_of_utterance_delay);
        }
        if let Some(event) = exceeded {
            self.discard_preemptive();
            self.on_agent_speaking();
            self.inner
                .agent
                .behavior()
                .on_user_turn_exceeded(self.context(), event)
                .await;
            return;
        }

        if let Some(link) = self.inner.session.realtime_link() {
            link.session.commit_audio();
            let handle = self.new_speech(
                None,
                SpeechPriority::Normal,
                SpeechSource::GenerateReply,
                false,
            );
            let step = handle.new_step();
            let (this, h, rt) = (self.clone(), handle.clone(), link.session.clone());
            tokio::spawn(
                async move { realtime::request_reply(this, h, step, rt, None, false).await },
            );
            self.schedule(&handle);
            return;
        }
        let preemptive = self.inner.state.lock().preemptive.take();
        let tools = self.all_tools();
        if let Some(p) = preemptive {
            let tool_names: Vec<String> = tools.iter().map(|t| t.name().to_string()).collect();
            if normalize(&p.transcript) == normalize(&text)
                && p.turn_ctx.is_equivalent(&turn_ctx)
                && p.tool_names == tool_names
            {
                tracing::debug!(speech_id = %p.handle.id(), "using the preemptive generation");
                self.inner.session.emit(SessionEvent::SpeechCreated {
                    user_initiated: false,
                    source: SpeechSource::GenerateReply,
                    speech_handle: p.handle.clone(),
                });
                let handle = p.handle.clone();
                // The generation task must outlive the preemptive slot now.
                p._task.detach();
                self.schedule(&handle);
                return;
            }
            tracing::debug!("preemptive generation discarded: the turn changed");
            p.handle.interrupt_force();
            p.handle.mark_done();
        }

        let handle = self.new_speech(
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
                chat_ctx: self.llm_context(&ctx, None),
                tools,
                tool_choice: None,
            },
        )
        .detach();
        self.schedule(&handle);
    }

    /// The realtime model started a reply by itself (server-side turn detection).
    pub(crate) fn on_realtime_generation(
        &self,
        generation: crate::llm::realtime::GenerationCreated,
    ) {
        let Some(link) = self.inner.session.realtime_link() else {
            return;
        };
        let handle = self.new_speech(
            None,
            SpeechPriority::Normal,
            SpeechSource::GenerateReply,
            false,
        );
        let step = handle.new_step();
        let (this, h, rt) = (self.clone(), handle.clone(), link.session.clone());
        tokio::spawn(async move { realtime::play_generation(this, h, step, rt, generation).await });
        self.schedule(&handle);
    }

    pub(super) fn discard_preemptive(&self) {
        let p = self.inner.state.lock().preemptive.take();
        if let Some(p) = p {
            p.handle.interrupt_force();
            p.handle.mark_done();
        }
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
