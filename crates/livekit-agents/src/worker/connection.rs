//! The agent WebSocket: connect, register, then pump messages until the socket drops; the
//! outer loop reconnects with backoff while jobs keep running.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use livekit_protocol as proto;
use livekit_protocol::{server_message, worker_message};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::options::WorkerOptions;
use super::{Inner, WorkerError};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where and how to connect.
pub(crate) struct Endpoint {
    url: url::Url,
    api_key: String,
    api_secret: String,
}

/// Turns a LiveKit URL (`http(s)://` or `ws(s)://`, with or without a path) into the agent
/// WebSocket URL `ws(s)://host/<path>/agent`.
pub(crate) fn agent_ws_url(base: &str) -> Result<url::Url, WorkerError> {
    let invalid = |reason: &str| WorkerError::InvalidUrl {
        url: base.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = url::Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    };
    url.set_scheme(scheme)
        .map_err(|_| invalid("cannot set the scheme"))?;
    let path = format!("{}/agent", url.path().trim_end_matches('/'));
    url.set_path(&path);
    Ok(url)
}

impl Endpoint {
    pub(crate) fn new(opts: &WorkerOptions) -> Result<Self, WorkerError> {
        if opts.ws_url.is_empty() {
            return Err(WorkerError::MissingConfig(
                "LiveKit URL (--url / LIVEKIT_URL)",
            ));
        }
        if opts.api_key.is_empty() {
            return Err(WorkerError::MissingConfig(
                "API key (--api-key / LIVEKIT_API_KEY)",
            ));
        }
        if opts.api_secret.is_empty() {
            return Err(WorkerError::MissingConfig(
                "API secret (--api-secret / LIVEKIT_API_SECRET)",
            ));
        }
        Ok(Self {
            url: agent_ws_url(&opts.ws_url)?,
            api_key: opts.api_key.clone(),
            api_secret: opts.api_secret.clone(),
        })
    }

    fn token(&self) -> Result<String, WorkerError> {
        livekit_api::access_token::AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_grants(livekit_api::access_token::VideoGrants {
                agent: true,
                ..Default::default()
            })
            .to_jwt()
            .map_err(|e| WorkerError::Token {
                reason: e.to_string(),
            })
    }
}

/// A failure of one connection attempt or of a live connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("{0}")]
    Setup(String),
    #[error("timed out waiting for the registration answer")]
    RegisterTimeout,
    #[error("connection closed by the server")]
    Closed,
    #[error("server asked to go away: {0}")]
    GoAway(String),
}

fn encode(msg: &proto::WorkerMessage) -> WsMessage {
    WsMessage::Binary(msg.encode_to_vec().into())
}

async fn connect_and_register(
    inner: &Arc<Inner>,
    endpoint: &Endpoint,
) -> Result<(Ws, proto::RegisterWorkerResponse), ConnError> {
    let opts = &inner.opts;
    let token = endpoint
        .token()
        .map_err(|e| ConnError::Setup(e.to_string()))?;
    let mut request = endpoint.url.as_str().into_client_request()?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| ConnError::Setup("token is not a valid header value".into()))?;
    request.headers_mut().insert("Authorization", auth);
    let (mut ws, _) = tokio::time::timeout(
        opts.register_timeout,
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| ConnError::Setup("timed out connecting".into()))??;

    let register = proto::WorkerMessage {
        message: Some(worker_message::Message::Register(
            proto::RegisterWorkerRequest {
                r#type: opts.server_type.to_proto() as i32,
                agent_name: opts.agent_name.clone(),
                version: opts.version.clone(),
                ping_interval: opts.ping_interval.as_secs() as u32,
                namespace: opts.namespace.clone(),
                allowed_permissions: Some(opts.permissions.to_proto()),
                ..Default::default()
            },
        )),
    };
    ws.send(encode(&register)).await?;

    let wait = async {
        loop {
            match ws.next().await {
                None => return Err(ConnError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(WsMessage::Binary(data))) => match proto::ServerMessage::decode(&*data) {
                    Ok(proto::ServerMessage {
                        message: Some(server_message::Message::Register(resp)),
                    }) => return Ok(resp),
                    Ok(other) => {
                        // Only the kind: an assignment carries the job's access token.
                        let kind = other.message.as_ref().map(server_message_kind);
                        tracing::warn!(?kind, "unexpected message before registration; ignored")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed message before registration; ignored")
                    }
                },
                Some(Ok(WsMessage::Close(_))) => return Err(ConnError::Closed),
                Some(Ok(_)) => {}
            }
        }
    };
    let resp = tokio::time::timeout(opts.register_timeout, wait)
        .await
        .map_err(|_| ConnError::RegisterTimeout)??;
    Ok((ws, resp))
}

/// Connects, registers and serves until closed; reconnects per the policy.
pub(crate) async fn connection_loop(
    inner: Arc<Inner>,
    endpoint: Endpoint,
) -> Result<(), WorkerError> {
    let policy = inner.opts.reconnect;
    let mut failures: u32 = 0;
    let mut out_rx = inner.out_rx.lock().await;
    loop {
        if inner.close.is_cancelled() {
            return Ok(());
        }
        let attempt = tokio::select! {
            _ = inner.close.cancelled() => return Ok(()),
            r = connect_and_register(&inner, &endpoint) => r,
        };
        let error = match attempt {
            Ok((ws, resp)) => {
                failures = 0;
                tracing::info!(
                    worker_id = resp.worker_id,
                    url = %endpoint.url,
                    agent_name = inner.opts.agent_name,
                    "registered with the LiveKit server"
                );
                inner.state.lock().worker_id = Some(resp.worker_id.clone());
                inner.connected.store(true, Ordering::SeqCst);
                inner.connection_failed.store(false, Ordering::SeqCst);
                let result = serve(&inner, ws, &mut out_rx).await;
                inner.connected.store(false, Ordering::SeqCst);
                match result {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if inner.close.is_cancelled() {
            return Ok(());
        }
        if failures >= policy.max_retry {
            inner.connection_failed.store(true, Ordering::SeqCst);
            return Err(WorkerError::ConnectionFailed {
                attempts: failures + 1,
                last_error: error.to_string(),
            });
        }
        let delay = policy.delay(failures);
        failures += 1;
        tracing::warn!(error = %error, retry_in = ?delay, attempt = failures, "agent server connection lost, reconnecting");
        tokio::select! {
            _ = inner.close.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Serves one registered connection. `Ok` when closing, `Err` when the connection broke.
async fn serve(
    inner: &Arc<Inner>,
    ws: Ws,
    out_rx: &mut tokio::sync::mpsc::UnboundedReceiver<proto::WorkerMessage>,
) -> Result<(), ConnError> {
    let (mut sink, mut stream) = ws.split();

    // Jobs that survived a reconnection are announced so the server keeps routing them here.
    let running = inner.running_job_ids();
    if !running.is_empty() {
        tracing::info!(jobs = ?running, "migrating running jobs to the new connection");
        let msg = proto::WorkerMessage {
            message: Some(worker_message::Message::MigrateJob(
                proto::MigrateJobRequest { job_ids: running },
            )),
        };
        sink.send(encode(&msg)).await?;
    }
    sink.send(encode(&inner.status_message())).await?;

    let mut status_tick = tokio::time::interval(inner.opts.status_interval);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status_tick.reset();
    let mut ping_tick = tokio::time::interval(inner.opts.ping_interval);
    ping_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping_tick.reset();

    loop {
        tokio::select! {
            _ = inner.close.cancelled() => {
                let _ = sink.send(WsMessage::Close(None)).await;
                return Ok(());
            }
            Some(msg) = out_rx.recv() => {
                sink.send(encode(&msg)).await?;
            }
            _ = status_tick.tick() => {
                sink.send(encode(&inner.status_message())).await?;
            }
            _ = inner.status_now.notified() => {
                sink.send(encode(&inner.status_message())).await?;
            }
            _ = ping_tick.tick() => {
                let ping = proto::WorkerMessage {
                    message: Some(worker_message::Message::Ping(proto::WorkerPing {
                        timestamp: now_millis(),
                    })),
                };
                sink.send(encode(&ping)).await?;
            }
            frame = stream.next() => match frame {
                None | Some(Ok(WsMessage::Close(_))) => return Err(ConnError::Closed),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(WsMessage::Binary(data))) => handle_server_message(inner, &data)?,
                Some(Ok(WsMessage::Text(t))) => {
                    tracing::warn!(len = t.len(), "unexpected text frame from the server; ignored");
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The name of a server message's kind (never its content, which may hold a token).
fn server_message_kind(m: &server_message::Message) -> &'static str {
    match m {
        server_message::Message::Register(_) => "register",
        server_message::Message::Availability(_) => "availability",
        server_message::Message::Assignment(_) => "assignment",
        server_message::Message::Termination(_) => "termination",
        server_message::Message::Pong(_) => "pong",
        server_message::Message::GoAway(_) => "go_away",
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The round trip of a pong: `now - last_timestamp` in milliseconds. The timestamp comes from
/// the server, so the difference saturates instead of overflowing.
fn pong_rtt_ms(now: i64, last_timestamp: i64) -> i64 {
    now.saturating_sub(last_timestamp)
}

fn handle_server_message(inner: &Arc<Inner>, data: &[u8]) -> Result<(), ConnError> {
    let msg = match proto::ServerMessage::decode(data) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, len = data.len(), "malformed server message; ignored");
            return Ok(());
        }
    };
    match msg.message {
        Some(server_message::Message::Availability(req)) => {
            tokio::spawn(inner.clone().answer_availability(req));
        }
        Some(server_message::Message::Assignment(a)) => inner.on_assignment(a),
        Some(server_message::Message::Termination(t)) => inner.on_termination(&t.job_id),
        Some(server_message::Message::Pong(p)) => {
            tracing::trace!(
                rtt_ms = pong_rtt_ms(now_millis(), p.last_timestamp),
                "worker pong"
            );
        }
        Some(server_message::Message::GoAway(g)) => return Err(ConnError::GoAway(g.reason)),
        Some(server_message::Message::Register(_)) => {
            tracing::warn!("duplicate registration answer; ignored");
        }
        None => tracing::warn!("server message without content; ignored"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_agent_url() {
        let u = |s: &str| agent_ws_url(s).map(|u| u.to_string());
        assert_eq!(
            u("http://localhost:7880").unwrap(),
            "ws://localhost:7880/agent"
        );
        assert_eq!(
            u("https://x.livekit.cloud/").unwrap(),
            "wss://x.livekit.cloud/agent"
        );
        assert_eq!(u("wss://h/base").unwrap(), "wss://h/base/agent");
        assert!(u("ftp://h").is_err());
        assert!(u("not a url").is_err());
    }
}
