//! Job-side server API calls (`JobContext::api`, `delete_room`) against a local Twirp server.
//!
//! The `livekit-api` clients speak Twirp with protobuf bodies (`application/protobuf`); errors
//! come back as Twirp JSON (`{"code": .., "msg": ..}`), as a LiveKit server sends them.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use livekit_agents::worker::{ApiCredentials, JobContext, JobContextParams, JobProcess};
use livekit_protocol as proto;
use parking_lot::Mutex;
use prost::Message;

/// One request seen by the fake server: method, bearer token, content type, body.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    token: String,
    content_type: String,
    body: Bytes,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_with: Option<StatusCode>,
}

fn protobuf(msg: impl Message) -> Response {
    (
        [(header::CONTENT_TYPE, "application/protobuf")],
        msg.encode_to_vec(),
    )
        .into_response()
}

async fn room_service(
    State(fake): State<Fake>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    fake.seen.lock().push(Seen {
        method: method.clone(),
        token: header(header::AUTHORIZATION)
            .trim_start_matches("Bearer ")
            .to_owned(),
        content_type: header(header::CONTENT_TYPE),
        body: body.clone(),
    });
    if let Some(status) = fake.fail_with {
        let error = serde_json::json!({"code": "unauthenticated", "msg": "invalid token"});
        return (status, axum::Json(error)).into_response();
    }
    match method.as_str() {
        "DeleteRoom" => protobuf(proto::DeleteRoomResponse::default()),
        "ListParticipants" => protobuf(proto::ListParticipantsResponse {
            participants: vec![
                proto::ParticipantInfo {
                    identity: "alice".into(),
                    kind: proto::participant_info::Kind::Standard as i32,
                    ..Default::default()
                },
                proto::ParticipantInfo {
                    identity: "agent-AJ_1".into(),
                    kind: proto::participant_info::Kind::Agent as i32,
                    ..Default::default()
                },
            ],
        }),
        "UpdateParticipant" => {
            let req = proto::UpdateParticipantRequest::decode(body).unwrap();
            protobuf(proto::ParticipantInfo {
                identity: req.identity,
                attributes: req.attributes,
                ..Default::default()
            })
        }
        _ => (StatusCode::NOT_FOUND, "no such method").into_response(),
    }
}

async fn serve(fail_with: Option<StatusCode>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let fake = Fake {
        seen: Arc::default(),
        fail_with,
    };
    let app = axum::Router::new()
        .route(
            "/twirp/livekit.RoomService/{method}",
            axum::routing::post(room_service),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake.seen)
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

fn claims(token: &str) -> livekit_api::access_token::Claims {
    livekit_api::access_token::Claims::from_unverified(token).unwrap()
}

#[tokio::test]
async fn delete_room_calls_the_room_service() {
    let (url, seen) = serve(None).await;
    ctx(&url).delete_room().await.unwrap();
    let seen = seen.lock();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "DeleteRoom");
    assert_eq!(seen[0].content_type, "application/protobuf");
    let req = proto::DeleteRoomRequest::decode(seen[0].body.clone()).unwrap();
    assert_eq!(req.room, "room-to-delete");
    let claims = claims(&seen[0].token);
    assert!(claims.video.room_create);
    assert_eq!(claims.iss, "key");
}

#[tokio::test]
async fn delete_room_reports_server_errors_without_the_secret() {
    let (url, _seen) = serve(Some(StatusCode::UNAUTHORIZED)).await;
    let err = ctx(&url).delete_room().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("RoomService.DeleteRoom") && msg.contains("unauthenticated"),
        "{msg}"
    );
    assert!(!msg.contains("secret-secret"), "{msg}");
    let debug = format!("{:?}", ctx(&url).api());
    assert!(!debug.contains("secret-secret"), "{debug}");
}

#[tokio::test]
async fn api_lists_and_updates_participants() {
    let (url, seen) = serve(None).await;
    let ctx = ctx(&url);
    let people = ctx
        .api()
        .room()
        .list_participants(ctx.room_name())
        .await
        .unwrap();
    let identities: Vec<&str> = people.iter().map(|p| p.identity.as_str()).collect();
    assert_eq!(identities, ["alice", "agent-AJ_1"]);

    let updated = ctx
        .api()
        .room()
        .update_participant(
            ctx.room_name(),
            "alice",
            livekit_api::services::room::UpdateParticipantOptions {
                attributes: [("tier".to_string(), "gold".to_string())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.attributes["tier"], "gold");

    let seen = seen.lock();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["ListParticipants", "UpdateParticipant"]);
    let list = proto::ListParticipantsRequest::decode(seen[0].body.clone()).unwrap();
    assert_eq!(list.room, "room-to-delete");
    // Each call carries a token with the room-admin grant for this room.
    for s in seen.iter() {
        let c = claims(&s.token);
        assert!(c.video.room_admin);
        assert_eq!(c.video.room, "room-to-delete");
    }
}
