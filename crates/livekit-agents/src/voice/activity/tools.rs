//! The one tail after a step's tools ran (pipeline and realtime steps): record calls and
//! outputs, then answer them with a new step of the same speech, hand off, or finish.

use super::super::agent::Agent;
use super::super::events::{SessionEvent, SpeechSource};
use super::super::generation::ReplyRequest;
use super::super::realtime;
use super::super::speech_handle::SpeechHandle;
use super::super::tool_execution::ToolResult;
use super::event_loop::ActivityLoop;
use super::FollowUp;
use crate::llm::{ChatItem, ToolChoice};

impl ActivityLoop {
    /// The one tail after tools ran (pipeline and realtime): record calls and outputs, then
    /// answer them, hand off, or finish.
    pub(super) fn on_tools_executed(
        &mut self,
        handle: SpeechHandle,
        results: Vec<ToolResult>,
        follow_up: FollowUp,
    ) {
        let (reply_required, handoff) = self.record_tool_results(&handle, results);
        // What an `AgentTask` completed by one of these tools waits for before handing back.
        handle.mark_tool_step_recorded();
        let session = self.session().clone();
        let answer =
            reply_required && !handle.interrupted() && session.is_running() && !self.closed;
        match follow_up {
            FollowUp::Pipeline(tool_choice) => {
                if answer {
                    // A handoff drains this agent first: its reply to the tool output (the
                    // value a tool returned with the new agent) plays before the new agent's
                    // `on_enter`, text only.
                    self.schedule_tool_reply(&handle, tool_choice, handoff.is_some());
                } else {
                    self.finish_speech(&handle);
                }
            }
            FollowUp::Realtime(rt) => {
                let auto_reply = session
                    .realtime_link()
                    .is_some_and(|l| l.capabilities.auto_tool_reply_generation);
                if answer && !auto_reply {
                    self.schedule_realtime_tool_reply(&handle, rt, handoff.is_some());
                } else {
                    let chat_ctx = self.agent().chat_ctx();
                    let s = session.clone();
                    tokio::spawn(async move {
                        if let Err(e) = rt.update_chat_ctx(&chat_ctx).await {
                            s.report_error(
                                super::super::events::ErrorSource::RealtimeModel,
                                e,
                                true,
                            );
                        }
                    });
                    self.finish_speech(&handle);
                }
            }
        }
        if let Some(agent) = handoff {
            self.request_switch(agent);
        }
    }

    /// Adds calls and outputs to the history and emits `FunctionToolsExecuted`; returns whether
    /// a reply is needed and the agent to hand off to, if any.
    fn record_tool_results(
        &mut self,
        handle: &SpeechHandle,
        results: Vec<ToolResult>,
    ) -> (bool, Option<Agent>) {
        let session = self.session().clone();
        let mut calls = Vec::new();
        let mut outputs = Vec::new();
        let mut reply_required = false;
        let mut handoff = None;
        for r in results {
            let call_item = ChatItem::FunctionCall(r.call.clone());
            let out_item = ChatItem::FunctionCallOutput(r.output.clone());
            // Placed by creation time: a call goes before what was said while its tool ran.
            for item in [call_item, out_item] {
                self.agent().insert_chat_item(item.clone());
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

    /// Whether this step is past `max_tool_steps` (the reference's rule: with 3, the 4th
    /// consecutive tool step forces a text-only 5th generation); counts the new step.
    fn next_tool_step(&self, handle: &SpeechHandle) -> bool {
        let max_steps_reached = handle.num_steps() > self.session().options().max_tool_steps;
        handle.increment_num_steps();
        self.session().emit(SessionEvent::SpeechCreated {
            user_initiated: false,
            source: SpeechSource::ToolResponse,
            speech_handle: handle.clone(),
        });
        max_steps_reached
    }

    /// Schedules the next generation step of `handle`, answering the tool outputs just
    /// recorded.
    fn schedule_tool_reply(
        &mut self,
        handle: &SpeechHandle,
        tool_choice: Option<ToolChoice>,
        draining: bool,
    ) {
        let max_steps_reached = self.next_tool_step(handle);
        let tool_choice = if max_steps_reached || draining || tool_choice == Some(ToolChoice::None)
        {
            Some(ToolChoice::None)
        } else {
            tool_choice
        };
        let chat_ctx = self.activity.llm_context(&self.agent().chat_ctx(), None);
        let tools = self.activity.all_tools();
        self.spawn_reply(
            handle,
            ReplyRequest {
                chat_ctx,
                tools,
                tool_choice,
            },
        )
        .detach();
        self.schedule(handle, true);
    }

    /// The realtime counterpart: the model answers the tool outputs (no tools when past the
    /// step limit or when the agent hands off after this answer).
    fn schedule_realtime_tool_reply(
        &mut self,
        handle: &SpeechHandle,
        rt: std::sync::Arc<dyn crate::llm::realtime::RealtimeSession>,
        draining: bool,
    ) {
        let max_steps_reached = self.next_tool_step(handle);
        let step = handle.new_step();
        let (a, h) = (self.activity.clone(), handle.clone());
        let restrict = max_steps_reached || draining;
        tokio::spawn(async move {
            if restrict {
                let _ = rt.update_tool_choice(ToolChoice::None).await;
            }
            realtime::request_reply(a, h, step, rt.clone(), None, true).await;
            if restrict {
                // The restriction was for this answer only.
                let _ = rt.update_tool_choice(ToolChoice::Auto).await;
            }
        });
        self.schedule(handle, true);
    }
}
