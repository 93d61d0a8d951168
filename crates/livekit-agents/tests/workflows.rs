//! `TaskGroup`, `GetEmailTask` and `GetAddressTask` on text sessions driven by the scripted fake
//! LLM on the paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use livekit_agents::io::memory::MemoryTextOutput;
use livekit_agents::llm::{ChatItem, ChatRequest, ChatRole};
use livekit_agents::testing::{FakeLlm, FakeLlmResponse};
use livekit_agents::voice::*;
use livekit_agents::workflows::*;
use parking_lot::Mutex;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

type Job = Box<dyn Fn(AgentSession) -> BoxFuture<'static, ()> + Send + Sync>;

/// A parent agent whose `on_enter` runs `job`.
struct RunsOnEnter(Job);

#[async_trait]
impl AgentBehavior for RunsOnEnter {
    async fn on_enter(&self, ctx: AgentContext) {
        (self.0)(ctx.session.clone()).await;
    }
}

async fn start(llm: &FakeLlm, job: Job) -> AgentSession {
    let session = AgentSession::builder().llm(Arc::new(llm.clone())).build();
    let parent = Agent::builder()
        .id("parent")
        .instructions("You are the front desk.")
        .behavior(RunsOnEnter(job))
        .build();
    session
        .start(
            parent,
            SessionIo {
                text_output: Some(Arc::new(MemoryTextOutput::new())),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(ms(200)).await;
    session
}

fn tool_names(req: &ChatRequest) -> Vec<String> {
    let mut names: Vec<String> = req.tools.iter().map(|t| t.name.clone()).collect();
    names.sort();
    names
}

#[tokio::test(start_paused = true)]
async fn task_group_runs_in_order_goes_back_on_request_and_summarizes() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::text("What is your email?", ms(20)),
        FakeLlmResponse::tool_call(
            "update_email_address",
            r#"{"email":"jane@example.com"}"#,
            ms(20),
        ),
        FakeLlmResponse::text("What is your address?", ms(20)),
        FakeLlmResponse::tool_call("out_of_scope", r#"{"task_ids":["email"]}"#, ms(20)),
        FakeLlmResponse::text("Sure, what is the new email?", ms(20)),
        FakeLlmResponse::tool_call(
            "update_email_address",
            r#"{"email":"joe@example.org"}"#,
            ms(20),
        ),
        FakeLlmResponse::text("And your address?", ms(20)),
        FakeLlmResponse::tool_call(
            "update_address",
            r#"{"street_address":"1 Main St","unit_number":"","locality":"Springfield","country":"United States"}"#,
            ms(20),
        ),
        FakeLlmResponse::text(
            "Email joe@example.org, address 1 Main St Springfield United States.",
            ms(20),
        ),
    ]);
    let outcome: Arc<Mutex<Option<Result<TaskGroupResult, TaskError>>>> = Arc::default();
    let completed: Arc<Mutex<Vec<String>>> = Arc::default();
    let (out, done) = (outcome.clone(), completed.clone());
    let session = start(
        &llm,
        Box::new(move |session| {
            let (out, done) = (out.clone(), done.clone());
            Box::pin(async move {
                let r = TaskGroup::new()
                    .add("email", "Collect the user's email", || {
                        GetEmailTask::new().build()
                    })
                    .add("address", "Collect the user's address", || {
                        GetAddressTask::new().build()
                    })
                    .on_task_completed(move |ev| {
                        let done = done.clone();
                        async move { done.lock().push(ev.task_id) }
                    })
                    .run(&session)
                    .await;
                *out.lock() = Some(r);
            })
        }),
    )
    .await;
    assert_eq!(session.current_agent().unwrap().id(), "get_email_task");
    session.run("jane@example.com").await.unwrap();
    tokio::time::sleep(ms(200)).await;
    assert_eq!(session.current_agent().unwrap().id(), "get_address_task");
    session
        .run("Wait, I want to change my email")
        .await
        .unwrap();
    tokio::time::sleep(ms(200)).await;
    assert_eq!(session.current_agent().unwrap().id(), "get_email_task");
    session.run("joe@example.org").await.unwrap();
    tokio::time::sleep(ms(200)).await;
    session
        .run("1 Main St, Springfield, United States")
        .await
        .unwrap();
    tokio::time::sleep(ms(500)).await;

    let result = outcome.lock().take().expect("the group finished").unwrap();
    let email: GetEmailResult = result.get("email").unwrap();
    assert_eq!(email.email_address, "joe@example.org");
    let address: GetAddressResult = result.get("address").unwrap();
    assert_eq!(address.address, "1 Main St Springfield United States");
    assert!(result.task_errors.is_empty());
    assert_eq!(*completed.lock(), vec!["email", "email", "address"]);
    assert_eq!(session.current_agent().unwrap().id(), "parent");

    let reqs = llm.requests();
    assert_eq!(reqs.len(), 9, "{reqs:#?}");
    // The greeting of the first task: no way back yet; decline is hidden (IGNORE_ON_ENTER).
    assert_eq!(tool_names(&reqs[0]), vec!["update_email_address"]);
    // The second task's greeting hides out_of_scope; its user turn offers it.
    assert_eq!(tool_names(&reqs[2]), vec!["update_address"]);
    assert_eq!(
        tool_names(&reqs[3]),
        vec!["decline_address_capture", "out_of_scope", "update_address"]
    );
    // The email task again, with the conversation so far.
    assert!(reqs[4]
        .chat_ctx
        .messages()
        .any(|m| m.text_content().as_deref() == Some("jane@example.com")));
    // The summary replaced the group's messages in the parent's conversation.
    let parent_ctx = session.current_agent().unwrap().chat_ctx();
    let texts: Vec<String> = parent_ctx
        .items()
        .iter()
        .filter_map(ChatItem::as_message)
        .filter(|m| m.role != ChatRole::System)
        .filter_map(|m| m.text_content())
        .collect();
    assert_eq!(
        texts,
        vec!["<chat_history_summary>Email joe@example.org, address 1 Main St Springfield United States.</chat_history_summary>"]
    );
}

#[tokio::test(start_paused = true)]
async fn task_group_stops_at_a_failure_or_records_it_with_return_exceptions() {
    for return_exceptions in [false, true] {
        let llm = FakeLlm::new(vec![
            FakeLlmResponse::text("What is your email?", ms(20)),
            FakeLlmResponse::tool_call("decline_email_capture", r#"{"reason":"private"}"#, ms(20)),
            FakeLlmResponse::text("What is your address?", ms(20)),
        ]);
        let outcome: Arc<Mutex<Option<Result<TaskGroupResult, TaskError>>>> = Arc::default();
        let out = outcome.clone();
        let session = start(
            &llm,
            Box::new(move |session| {
                let out = out.clone();
                Box::pin(async move {
                    let r = TaskGroup::new()
                        .add("email", "Collect the email", || GetEmailTask::new().build())
                        .add("address", "Collect the address", || {
                            GetAddressTask::new().build()
                        })
                        .summarize_chat_ctx(false)
                        .return_exceptions(return_exceptions)
                        .run(&session)
                        .await;
                    *out.lock() = Some(r);
                })
            }),
        )
        .await;
        session.run("I'd rather not say").await.unwrap();
        tokio::time::sleep(ms(300)).await;
        let failed = TaskError::Failed {
            reason: "couldn't get the email address: private".into(),
        };
        if return_exceptions {
            assert_eq!(session.current_agent().unwrap().id(), "get_address_task");
            session.close().await;
            tokio::time::sleep(ms(100)).await;
            assert_eq!(outcome.lock().take(), Some(Err(TaskError::SessionClosed)));
        } else {
            assert_eq!(outcome.lock().take(), Some(Err(failed)));
            assert_eq!(session.current_agent().unwrap().id(), "parent");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn get_email_task_refuses_invalid_addresses_and_confirms_when_required() {
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::text("What is your email?", ms(20)),
        FakeLlmResponse::tool_call(
            "update_email_address",
            r#"{"email":"jane at example"}"#,
            ms(20),
        ),
        FakeLlmResponse::text("Could you repeat the domain?", ms(20)),
        FakeLlmResponse::tool_call(
            "update_email_address",
            r#"{"email":" jane@example.com "}"#,
            ms(20),
        ),
        FakeLlmResponse::text("That is jane@example.com, right?", ms(20)),
        FakeLlmResponse::tool_call("confirm_email_address", "{}", ms(20)),
    ]);
    let outcome: Arc<Mutex<Option<Result<GetEmailResult, TaskError>>>> = Arc::default();
    let out = outcome.clone();
    let session = start(
        &llm,
        Box::new(move |session| {
            let out = out.clone();
            Box::pin(async move {
                let r = GetEmailTask::new()
                    .require_confirmation(true)
                    .run(&session)
                    .await;
                *out.lock() = Some(r);
            })
        }),
    )
    .await;
    let run = session.run("jane at example").await.unwrap();
    run.expect()
        .next_function_call_output()
        .is_error
        .then_some(())
        .unwrap();
    assert_eq!(
        run.expect()
            .contains_function_call_output()
            .is_function_call_output(None, None)
            .output,
        "Invalid email address provided: jane at example"
    );
    let run = session.run("jane@example.com").await.unwrap();
    let out = run
        .expect()
        .contains_function_call_output()
        .is_function_call_output(None, None);
    assert!(
        out.output
            .contains("The email has been updated to jane@example.com"),
        "{}",
        out.output
    );
    assert!(outcome.lock().is_none(), "not before the user confirmed");
    session.run("Yes, that's right").await.unwrap();
    tokio::time::sleep(ms(200)).await;
    assert_eq!(
        outcome.lock().take(),
        Some(Ok(GetEmailResult {
            email_address: "jane@example.com".into()
        }))
    );
    let reqs = llm.requests();
    assert!(!tool_names(&reqs[3]).contains(&"confirm_email_address".to_string()));
    assert!(tool_names(&reqs[4]).contains(&"confirm_email_address".to_string()));
}

#[tokio::test(start_paused = true)]
async fn get_address_task_refuses_incomplete_addresses_and_completes_without_confirmation_in_text()
{
    let llm = FakeLlm::new(vec![
        FakeLlmResponse::text("What is your address?", ms(20)),
        FakeLlmResponse::tool_call(
            "update_address",
            r#"{"street_address":"5 Rue X","unit_number":"","locality":"","country":"France"}"#,
            ms(20),
        ),
        FakeLlmResponse::text("Which city?", ms(20)),
        FakeLlmResponse::tool_call(
            "update_address",
            r#"{"street_address":"5 Rue X","unit_number":"App C4","locality":"75006 Paris","country":"France"}"#,
            ms(20),
        ),
    ]);
    let outcome: Arc<Mutex<Option<Result<GetAddressResult, TaskError>>>> = Arc::default();
    let out = outcome.clone();
    let session = start(
        &llm,
        Box::new(move |session| {
            let out = out.clone();
            Box::pin(async move {
                *out.lock() = Some(GetAddressTask::new().run(&session).await);
            })
        }),
    )
    .await;
    let run = session.run("5 rue X, France").await.unwrap();
    run.expect()
        .next_function_call_output()
        .output
        .contains("locality missing")
        .then_some(())
        .unwrap();
    session.run("Paris, 75006, apartment C4").await.unwrap();
    tokio::time::sleep(ms(200)).await;
    assert_eq!(
        outcome.lock().take(),
        Some(Ok(GetAddressResult {
            address: "5 Rue X App C4 75006 Paris France".into()
        }))
    );
}
