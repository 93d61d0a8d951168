//! Job-side server API calls against a local HTTP server.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use livekit_agents::worker::{ApiCredentials, JobContext, JobContextParams, JobProcess};
use parking_lot::Mutex;

type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

async fn serve(status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/twirp/livekit.RoomService/DeleteRoom",
            axum::routing::post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    seen.lock().push((
                        "DeleteRoom".into(),
                        auth,
                        serde_json::from_str(&body).unwrap(),
                    ));
                    (status, "{}")
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn ctx(url: &str) -> JobContext {
    let mut job = livekit_protocol::Job {
        id: "AJ_1".into(),
        ..Default::default()
    };
    job.room = Some(livekit_protocol::Room {
        name: "room-to-delete".into(),
        ..Default::default()
    });
    JobContext::new(
        JobContextParams {
            job,
            api: ApiCredentials {
                url: url.into(),
                api_key: "key".into(),
                api_secret: "secret-secret-secret-secret-000".into(),
            },
            ..Default::default()
        },
        JobProcess::new(),
    )
}

#[tokio::test]
async fn delete_room_calls_the_room_service() {
    let (url, seen) = serve(StatusCode::OK).await;
    ctx(&url).delete_room().await.unwrap();
    let seen = seen.lock();
    assert_eq!(seen.len(), 1);
    let (_, auth, body) = &seen[0];
    assert_eq!(body["room"], "room-to-delete");
    let token = auth.strip_prefix("Bearer ").unwrap();
    let claims = livekit_api::access_token::Claims::from_unverified(token).unwrap();
    assert!(claims.video.room_create);
    assert_eq!(claims.iss, "key");
}

#[tokio::test]
async fn delete_room_reports_http_errors() {
    let (url, _seen) = serve(StatusCode::UNAUTHORIZED).await;
    let err = ctx(&url).delete_room().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("RoomService.DeleteRoom") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("secret-secret"), "{msg}");
}
