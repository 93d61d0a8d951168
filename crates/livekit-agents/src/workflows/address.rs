//! [`GetAddressTask`]: ask for a postal address, check it is complete, confirm it.

use std::sync::Arc;

use super::capture::{update_flags, CaptureSpec, CaptureState};
use crate::llm::{ChatContext, FunctionTool, RunContext, ToolError};
use crate::voice::{AgentSession, AgentTask, TaskError};

/// What [`GetAddressTask`] collected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GetAddressResult {
    /// The confirmed address, its fields joined by spaces (street, unit if any, locality,
    /// country).
    pub address: String,
}

/// Collects the user's postal address, from any country (the reference's `GetAddressTask`).
///
/// The model records each hypothesis with `update_address(street_address, unit_number,
/// locality, country)`; a hypothesis missing the street, the locality or the country is
/// refused with an error the model reads. When confirmation is required the model reads the
/// address back and a `confirm_address` tool appears, which completes the task once the user
/// agreed. `decline_address_capture` ends the task with an error when the user refuses.
///
/// ```no_run
/// use livekit_agents::voice::AgentSession;
/// use livekit_agents::workflows::GetAddressTask;
///
/// # async fn demo(session: AgentSession) {
/// let address = GetAddressTask::new().require_confirmation(true).run(&session).await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct GetAddressTask {
    instructions: Option<String>,
    extra_instructions: String,
    chat_ctx: Option<ChatContext>,
    tools: Vec<FunctionTool>,
    require_confirmation: Option<bool>,
    require_explicit_ask: bool,
}

impl GetAddressTask {
    /// The task with the reference's defaults: confirmation by voice only, no explicit ask
    /// required.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the instructions entirely.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Appended to the default instructions.
    pub fn extra_instructions(mut self, extra: impl Into<String>) -> Self {
        self.extra_instructions = extra.into();
        self
    }

    /// The task agent's starting conversation.
    pub fn chat_ctx(mut self, chat_ctx: ChatContext) -> Self {
        self.chat_ctx = Some(chat_ctx);
        self
    }

    /// More tools for the task's agent.
    pub fn tools(mut self, tools: impl IntoIterator<Item = FunctionTool>) -> Self {
        self.tools.extend(tools);
        self
    }

    /// Whether to confirm the address with the user (default: when the session hears the
    /// user's voice).
    pub fn require_confirmation(mut self, required: bool) -> Self {
        self.require_confirmation = Some(required);
        self
    }

    /// Records an address only once the agent asked for it (`update_address` is hidden from
    /// the opening reply; default false).
    pub fn require_explicit_ask(mut self, required: bool) -> Self {
        self.require_explicit_ask = required;
        self
    }

    fn default_instructions(&self) -> String {
        let confirmation = if self.require_confirmation != Some(false) {
            "When the user confirms the address is right, call `confirm_address`.\n"
        } else {
            ""
        };
        format!(
            "You are one step of a larger flow; your only job is to capture the user's postal address, from any country.\n\
             Split it into a street address (house number, street, block or district), a unit number (floor, apartment; \
             empty when there is none), a locality (city, province or state, postal code) and the country written out in full.\n\
             The user may speak the address: turn 'dash' into - and spelled-out numbers into digits, join spelled-out letters, \
             drop hesitations, and do not comment on these corrections. Read postal codes back digit by digit.\n\
             Call `update_address` as soon as you have a new guess of the address, before saying anything else. \
             Never make up an address: use only what the user said.\n\
             {confirmation}\
             If the address stays unclear, ask for it in parts: street address, unit number if any, locality, then country.\n\
             Stay on this topic; no markdown, no bullet points, no greetings. Act only by calling the tools.\n\
             {}",
            self.extra_instructions
        )
    }

    /// The task, to run with [`AgentTask::run`] (or to add to a
    /// [`TaskGroup`](super::TaskGroup)).
    pub fn build(self) -> AgentTask<GetAddressResult> {
        AgentTask::new(move |done| {
            let state = CaptureState::new(&ADDRESS, self.require_confirmation, false, done);
            let mut tools = self.tools.clone();
            tools.push(update_tool(state.clone(), self.require_explicit_ask));
            let instructions = self
                .instructions
                .clone()
                .unwrap_or_else(|| self.default_instructions());
            state.agent(instructions, tools, self.chat_ctx.clone())
        })
    }

    /// Builds and runs the task in `session`.
    pub async fn run(self, session: &AgentSession) -> Result<GetAddressResult, TaskError> {
        self.build().run(session).await
    }
}

static ADDRESS: CaptureSpec<GetAddressResult> = CaptureSpec {
    agent_id: "get_address_task",
    noun: "address",
    long_noun: "address",
    confirm_tool: "confirm_address",
    decline_tool: "decline_address_capture",
    ask_instructions: "Ask the user for their address. If they already gave one earlier in this \
                       conversation, record it with update_address instead of asking again.",
    into_result: |address| GetAddressResult { address },
};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddressArgs {
    /// Depending on the country: house number, street name, block or district.
    street_address: String,
    /// The unit, e.g. Floor 1 or Apartment 12; '' when there is none.
    unit_number: String,
    /// Depending on the country: city, postal code, province or state.
    locality: String,
    /// The country, spelled out in full.
    country: String,
}

fn update_tool(state: Arc<CaptureState<GetAddressResult>>, explicit_ask: bool) -> FunctionTool {
    FunctionTool::new(
        "update_address",
        "Update the address provided by the user.",
        move |ctx: RunContext, args: AddressArgs| {
            let state = state.clone();
            async move {
                let street = args.street_address.trim();
                let unit = args.unit_number.trim();
                let locality = args.locality.trim();
                let country = args.country.trim();
                let missing: Vec<&str> = [
                    ("street_address", street),
                    ("locality", locality),
                    ("country", country),
                ]
                .iter()
                .filter(|(_, v)| v.is_empty())
                .map(|(k, _)| *k)
                .collect();
                if !missing.is_empty() {
                    return Err(ToolError::new(format!(
                        "Incomplete address: {} missing; ask the user for it",
                        missing.join(", ")
                    )));
                }
                let fields: Vec<&str> = if unit.is_empty() {
                    vec![street, locality, country]
                } else {
                    vec![street, unit, locality, country]
                };
                let address = fields.join(" ");
                Ok(state.record(&ctx, address, |spell| {
                    if spell {
                        let spelled: String = street
                            .chars()
                            .filter(|c| !c.is_whitespace())
                            .map(|c| format!("{c} "))
                            .collect();
                        format!(
                            "Repeat the address field by field, spelling the street name letter by letter: {:?}",
                            std::iter::once(spelled.trim_end())
                                .chain(fields.iter().skip(1).copied())
                                .collect::<Vec<_>>()
                        )
                    } else {
                        "Repeat the address back to the user.".to_owned()
                    }
                }))
            }
        },
    )
    .with_flags(update_flags(explicit_ask))
}
