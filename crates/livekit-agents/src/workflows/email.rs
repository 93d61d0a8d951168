//! [`GetEmailTask`]: ask for an email address, validate it, confirm it.

use std::sync::Arc;

use super::capture::{update_flags, CaptureSpec, CaptureState};
use crate::llm::{ChatContext, FunctionTool, RunContext, ToolError};
use crate::voice::{AgentSession, AgentTask, TaskError};

/// What [`GetEmailTask`] collected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GetEmailResult {
    /// The confirmed address.
    pub email_address: String,
}

/// Whether `email` is a plausible address: a local part starting with a letter or digit and
/// made of letters, digits and `._%+-`; `@`; domain labels of letters, digits and inner
/// hyphens; a final label of at least two letters (the reference's pattern).
///
/// ```
/// use livekit_agents::workflows::is_valid_email;
///
/// assert!(is_valid_email("jane.doe+news@mail.example.co"));
/// assert!(!is_valid_email("jane@localhost"));
/// assert!(!is_valid_email(".jane@example.com"));
/// ```
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = local
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
    };
    local_ok
        && !rest.is_empty()
        && rest.iter().all(|l| label_ok(l))
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Collects the user's email address (the reference's `GetEmailTask`).
///
/// The model records each hypothesis with `update_email_address` (invalid addresses are
/// refused with an error it reads); when confirmation is required it reads the address back
/// and a `confirm_email_address` tool appears, which completes the task once the user agreed.
/// `decline_email_capture` ends the task with an error when the user refuses.
///
/// ```no_run
/// use livekit_agents::voice::AgentSession;
/// use livekit_agents::workflows::GetEmailTask;
///
/// # async fn demo(session: AgentSession) {
/// match GetEmailTask::new().run(&session).await {
///     Ok(result) => println!("email: {}", result.email_address),
///     Err(e) => println!("no email: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct GetEmailTask {
    instructions: Option<String>,
    extra_instructions: String,
    chat_ctx: Option<ChatContext>,
    tools: Vec<FunctionTool>,
    require_confirmation: Option<bool>,
    require_explicit_ask: bool,
    verify_spelling: bool,
}

impl GetEmailTask {
    /// The task with the reference's defaults: confirmation by voice only, no explicit ask
    /// required, no spelling check.
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

    /// Records an address only once the agent asked for it: `update_email_address` is hidden
    /// from the opening reply ([`ToolFlags::IGNORE_ON_ENTER`](crate::llm::ToolFlags::IGNORE_ON_ENTER)), so an address said earlier is
    /// not taken without asking (default false).
    pub fn require_explicit_ask(mut self, required: bool) -> Self {
        self.require_explicit_ask = required;
        self
    }

    /// Always confirm, spelling the address character by character (default false).
    pub fn verify_spelling(mut self, verify: bool) -> Self {
        self.verify_spelling = verify;
        self
    }

    fn default_instructions(&self) -> String {
        let confirmation = if self.verify_spelling || self.require_confirmation != Some(false) {
            "When the user confirms the address is right, call `confirm_email_address`.\n"
        } else {
            ""
        };
        let spelling = if self.verify_spelling {
            "Once you have an address, spell it back character by character and ask the user to confirm it.\n"
        } else {
            ""
        };
        format!(
            "You are one step of a larger flow; your only job is to capture the user's email address.\n\
             The user may speak the address: turn 'at' into @, 'dot' into ., 'underscore' into _, 'dash' into - and \
             'plus' into +, join spelled-out letters, drop hesitations, and do not comment on these corrections. \
             If only the part before the @ is given, ask for the domain.\n\
             {spelling}\
             Call `update_email_address` as soon as you have a new guess of the address, before saying anything else. \
             Never make up an address: use only what the user said.\n\
             {confirmation}\
             If the address stays unclear, ask for it in parts: first what comes before the @, then the domain.\n\
             Stay on this topic; no markdown, no greetings. Act only by calling the tools.\n\
             {}",
            self.extra_instructions
        )
    }

    /// The task, to run with [`AgentTask::run`] (or to add to a
    /// [`TaskGroup`](super::TaskGroup)).
    pub fn build(self) -> AgentTask<GetEmailResult> {
        AgentTask::new(move |done| {
            let require_confirmation = if self.verify_spelling {
                Some(true)
            } else {
                self.require_confirmation
            };
            let state = CaptureState::new(&EMAIL, require_confirmation, self.verify_spelling, done);
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
    pub async fn run(self, session: &AgentSession) -> Result<GetEmailResult, TaskError> {
        self.build().run(session).await
    }
}

static EMAIL: CaptureSpec<GetEmailResult> = CaptureSpec {
    agent_id: "get_email_task",
    noun: "email",
    long_noun: "email address",
    confirm_tool: "confirm_email_address",
    decline_tool: "decline_email_capture",
    ask_instructions: "Ask the user for their email address. If they already gave one earlier in \
                       this conversation, record it with update_email_address instead of asking again.",
    into_result: |email_address| GetEmailResult { email_address },
};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EmailArgs {
    /// The email address the user gave.
    email: String,
}

fn update_tool(state: Arc<CaptureState<GetEmailResult>>, explicit_ask: bool) -> FunctionTool {
    FunctionTool::new(
        "update_email_address",
        "Update the email address provided by the user.",
        move |ctx: RunContext, args: EmailArgs| {
            let state = state.clone();
            async move {
                let email = args.email.trim().to_owned();
                if !is_valid_email(&email) {
                    return Err(ToolError::new(format!(
                        "Invalid email address provided: {email}"
                    )));
                }
                let spaced: Vec<String> = email.chars().map(String::from).collect();
                Ok(state.record(&ctx, email, |spell| {
                    if spell {
                        format!(
                            "Repeat the email character by character: {}",
                            spaced.join(" ")
                        )
                    } else {
                        "Repeat the email back to the user.".to_owned()
                    }
                }))
            }
        },
    )
    .with_flags(update_flags(explicit_ask))
}

#[cfg(test)]
mod tests {
    use super::is_valid_email;

    #[test]
    fn email_validation_follows_the_reference_pattern() {
        for ok in [
            "a@b.co",
            "john.doe_1%x+y-z@sub-domain.example.org",
            "9@x9.io",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "", "@b.co", "a@", "a@b", "a@b.c", "a@-b.co", "a@b-.co", "a@.co", "a b@c.co",
            "_a@b.co", "a@b.c0", "a@@b.co", "a@b..co",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }
}
