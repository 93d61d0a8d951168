//! Answering-machine detection by transcript: the classification step of the reference 1.8.9
//! `AMD` (an LLM sorts the call's greeting into human, phone menu, voicemail, or a mailbox that
//! takes no message). The reference's timing rules around it (short-greeting and silence
//! thresholds, postponing) are not ported: call [`classify_greeting`] with the greeting
//! transcript when you have it, and act on the category (start [`IvrDetection`](super::IvrDetection)
//! for a menu, leave a message for voicemail).

use crate::llm::{ChatContext, ChatRequest, ChatRole, Llm, ToolChoice, ToolDefinition};

/// What answered the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AmdCategory {
    /// A person.
    #[serde(rename = "human")]
    Human,
    /// A phone menu ("press 1 ...") or a call-screening prompt.
    #[serde(rename = "machine-ivr")]
    MachineIvr,
    /// A voicemail greeting that takes a message.
    #[serde(rename = "machine-vm")]
    MachineVm,
    /// A machine where no message can be left (mailbox full or not set up).
    #[serde(rename = "machine-unavailable")]
    MachineUnavailable,
    /// Not enough to tell.
    #[serde(rename = "uncertain")]
    Uncertain,
}

impl AmdCategory {
    /// A person answered.
    pub fn is_human(self) -> bool {
        self == AmdCategory::Human
    }

    /// A machine answered.
    pub fn is_machine(self) -> bool {
        matches!(
            self,
            AmdCategory::MachineIvr | AmdCategory::MachineVm | AmdCategory::MachineUnavailable
        )
    }
}

/// The classification prompt (the reference's categories and examples).
pub const AMD_PROMPT: &str = r#"Task:
Classify the call greeting transcript into exactly one of these categories:

human: A person answered (e.g., "Hello?", "This is John.").
machine-ivr: A prompt to press a key (e.g., "Press 1 to continue").
machine-vm: A voicemail greeting where leaving a message IS possible.
machine-unavailable: Any greeting indicating it's NOT possible to leave message, eg because mailbox is full, not setup, etc.
uncertain: For partial transcripts that are ambiguous.

Examples:
Input: "The person you called has a voice mailbox that hasn't been set up yet. Goodbye."
Output: machine-unavailable

Input: "Please state your name and why you're calling, and I will check if the person is available"
Output: machine-ivr
Note: this should apply for any call screening prompts.

Input: "I'm away from my desk. If you leave a message, I will get back to you."
Output: machine-vm

Input: "Hello, this is Lisa."
Output: human"#;

/// Longest greeting sent to the model, in characters.
const MAX_GREETING_CHARS: usize = 4000;

/// The classification could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmdError {
    /// The model request failed.
    #[error("answering-machine detection failed: {0}")]
    Llm(String),
}

/// Asks `llm` what answered, from the greeting `transcript` (a `save_prediction` tool call
/// with a required tool choice). A reply without a valid label is [`AmdCategory::Uncertain`].
pub async fn classify_greeting(llm: &dyn Llm, transcript: &str) -> Result<AmdCategory, AmdError> {
    let transcript: String = transcript.chars().take(MAX_GREETING_CHARS).collect();
    let mut ctx = ChatContext::new();
    ctx.add_message(ChatRole::System, AMD_PROMPT);
    ctx.add_message(ChatRole::User, transcript);
    let mut request = ChatRequest::new(ctx);
    request.tools = vec![ToolDefinition {
        name: "save_prediction".into(),
        description: "Save the prediction to the verdict.".into(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "label": {
                    "type": "string",
                    "enum": ["human", "machine-ivr", "machine-vm", "machine-unavailable", "uncertain"]
                }
            },
            "required": ["label"]
        }),
    }];
    request.tool_choice = Some(ToolChoice::Required);
    request.options.temperature = Some(0.0);
    let response = llm
        .chat(request)
        .collect()
        .await
        .map_err(|e| AmdError::Llm(e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Label {
        label: AmdCategory,
    }
    Ok(response
        .tool_calls
        .iter()
        .filter(|c| c.name == "save_prediction")
        .find_map(|c| serde_json::from_str::<Label>(&c.arguments).ok())
        .map(|l| l.label)
        .unwrap_or(AmdCategory::Uncertain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeLlm, FakeLlmResponse};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_model_labels_the_greeting() {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::tool_call(
                "save_prediction",
                r#"{"label": "machine-ivr"}"#,
                Duration::from_millis(10),
            ),
            FakeLlmResponse::tool_call(
                "save_prediction",
                r#"{"label": "robot"}"#,
                Duration::from_millis(10),
            ),
            FakeLlmResponse::text("human", Duration::from_millis(10)),
        ]);
        let menu = "Thanks for calling. For sales press 1.";
        let c = classify_greeting(&llm, menu).await.unwrap();
        assert_eq!(c, AmdCategory::MachineIvr);
        assert!(c.is_machine() && !c.is_human());
        let req = &llm.requests()[0];
        assert_eq!(req.tool_choice, Some(ToolChoice::Required));
        assert_eq!(req.tools[0].name, "save_prediction");
        let text = format!("{:?}", req.chat_ctx);
        assert!(text.contains("machine-unavailable") && text.contains(menu));
        // Garbage labels and replies without the tool are "uncertain".
        assert_eq!(
            classify_greeting(&llm, "hmm").await.unwrap(),
            AmdCategory::Uncertain
        );
        assert_eq!(
            classify_greeting(&llm, "hello").await.unwrap(),
            AmdCategory::Uncertain
        );
        assert_eq!(
            serde_json::to_string(&AmdCategory::MachineVm).unwrap(),
            "\"machine-vm\""
        );
    }
}
