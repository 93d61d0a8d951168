//! An agent's own turn handling ([`AgentTurnHandling`]): the builder methods and the getter.
//! The activity resolves each value agent first, then session (see `Activity::preemptive_options`,
//! `AgentSession::turn_detection_for` and `AgentSession::endpointing_for`).

use std::time::Duration;

use super::{Agent, AgentBuilder};
use crate::voice::options::{AgentTurnHandling, EndpointingMode, TurnDetection};

impl AgentBuilder {
    /// All of the agent's turn-handling overrides at once (replaces those set before).
    ///
    /// ```
    /// use std::time::Duration;
    /// use livekit_agents::voice::{Agent, AgentTurnHandling, TurnDetection};
    ///
    /// let agent = Agent::builder()
    ///     .turn_handling(AgentTurnHandling {
    ///         turn_detection: Some(TurnDetection::Vad),
    ///         min_endpointing_delay: Some(Duration::from_millis(800)),
    ///         preemptive_generation: Some(false),
    ///         ..Default::default()
    ///     })
    ///     .build();
    /// assert_eq!(agent.turn_handling().min_endpointing_delay, Some(Duration::from_millis(800)));
    /// ```
    pub fn turn_handling(mut self, turn_handling: AgentTurnHandling) -> Self {
        self.turn_handling = turn_handling;
        self
    }

    /// Overrides the session's turn detection while this agent is active.
    pub fn turn_detection(mut self, turn_detection: TurnDetection) -> Self {
        self.turn_handling.turn_detection = Some(turn_detection);
        self
    }

    /// Overrides the endpointing mode (fixed or dynamic).
    pub fn endpointing_mode(mut self, mode: EndpointingMode) -> Self {
        self.turn_handling.endpointing_mode = Some(mode);
        self
    }

    /// Overrides the endpointing `min_delay` (the reference's `min_endpointing_delay`).
    pub fn min_endpointing_delay(mut self, delay: Duration) -> Self {
        self.turn_handling.min_endpointing_delay = Some(delay);
        self
    }

    /// Overrides the endpointing `max_delay` (the reference's `max_endpointing_delay`).
    pub fn max_endpointing_delay(mut self, delay: Duration) -> Self {
        self.turn_handling.max_endpointing_delay = Some(delay);
        self
    }

    /// Overrides whether the user can interrupt this agent.
    pub fn allow_interruptions(mut self, allow: bool) -> Self {
        self.turn_handling.allow_interruptions = Some(allow);
        self
    }

    /// Turns preemptive generation on or off for this agent.
    pub fn preemptive_generation(mut self, enabled: bool) -> Self {
        self.turn_handling.preemptive_generation = Some(enabled);
        self
    }

    /// Turns preemptive TTS on or off for this agent.
    pub fn preemptive_tts(mut self, enabled: bool) -> Self {
        self.turn_handling.preemptive_tts = Some(enabled);
        self
    }
}

impl Agent {
    /// The agent's turn-handling overrides (`None` fields use the session's values).
    pub fn turn_handling(&self) -> &AgentTurnHandling {
        &self.inner.turn_handling
    }
}
