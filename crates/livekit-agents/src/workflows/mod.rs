//! Prebuilt multi-step flows on top of [`AgentTask`](crate::voice::AgentTask) (the reference's
//! `beta.workflows`):
//!
//! - [`TaskGroup`]: runs several tasks in order; the user can go back to a task already done
//!   ("actually, change my email"), which runs again before the group continues.
//! - [`GetEmailTask`] and [`GetAddressTask`]: collect an email address / a postal address,
//!   validated, read back and confirmed with the user when the conversation is by voice.

mod address;
mod capture;
mod email;
mod task_group;

pub use address::{GetAddressResult, GetAddressTask};
pub use email::{is_valid_email, GetEmailResult, GetEmailTask};
pub use task_group::{TaskCompletedEvent, TaskGroup, TaskGroupResult};

use crate::voice::AgentSession;

/// Whether a capture task confirms with the user: `require_confirmation` when set, else when
/// the session listens to the user's voice (it has an STT and audio input is on). The
/// reference decides by the modality of the reply's input; a session that hears the user is
/// the same condition for its voice turns.
fn confirmation_required(
    require_confirmation: Option<bool>,
    session: Option<&AgentSession>,
) -> bool {
    match require_confirmation {
        Some(required) => required,
        None => session.is_some_and(|s| s.stt().is_some() && s.audio_input_enabled()),
    }
}
