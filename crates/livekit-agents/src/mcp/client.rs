//! The MCP client: connection, tool listing, calls.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, JsonObject,
};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::Value;
use tokio::sync::watch;

use super::result::{McpContent, McpToolResult};
use crate::llm::{FunctionTool, RunContext, ToolDefinition, ToolError, ToolOutput};

/// Turns a tool result into what the model sees (see [`McpToolResult::into_output`] for the
/// default).
pub type ResultResolver =
    Arc<dyn Fn(McpToolResult) -> Result<ToolOutput, ToolError> + Send + Sync + 'static>;

/// How to reach an MCP server.
#[derive(Clone)]
pub enum McpTransport {
    /// A local command speaking MCP on its stdin/stdout (its stderr goes to `debug` logs).
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables (the agent's environment is inherited).
        env: HashMap<String, String>,
        /// Working directory (default: the agent's).
        cwd: Option<PathBuf>,
    },
    /// A server at a URL speaking MCP's streamable HTTP transport.
    StreamableHttp {
        /// The endpoint, e.g. `https://example.com/mcp`.
        url: String,
        /// Headers sent with every request (values are treated as secrets: never logged).
        headers: Vec<(String, String)>,
    },
}

impl std::fmt::Debug for McpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            McpTransport::Stdio {
                command, args, cwd, ..
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("cwd", cwd)
                .finish_non_exhaustive(),
            McpTransport::StreamableHttp { url, headers } => f
                .debug_struct("StreamableHttp")
                .field("url", url)
                .field(
                    "headers",
                    &headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// Options of an [`McpServer`].
#[derive(Clone)]
#[non_exhaustive]
#[derive(livekit_agents_macros::Setters)]
pub struct McpServerOptions {
    /// Longest wait for one request (tool list, tool call). Default 5 s (the reference's
    /// `client_session_timeout_seconds`).
    pub timeout: Duration,
    /// Longest wait for the connection and the `initialize` handshake. Default 5 s (the
    /// reference's HTTP `timeout`).
    pub connect_timeout: Duration,
    /// Only these tools (by name) are exposed; `None` (default) exposes all.
    pub allowed_tools: Option<Vec<String>>,
    /// Converts results for the model; `None` (default) uses [`McpToolResult::into_output`].
    pub result_resolver: Option<ResultResolver>,
}

impl Default for McpServerOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            allowed_tools: None,
            result_resolver: None,
        }
    }
}

impl std::fmt::Debug for McpServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServerOptions")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("allowed_tools", &self.allowed_tools)
            .field("result_resolver", &self.result_resolver.is_some())
            .finish()
    }
}

/// Why an MCP server could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The command could not be started.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built or a header is invalid.
    #[error("invalid HTTP configuration: {reason}")]
    Http {
        /// What is invalid.
        reason: String,
    },
    /// The `initialize` handshake failed.
    #[error("MCP handshake failed: {reason}")]
    Initialize {
        /// Why.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A request failed (transport closed, protocol error, server error).
    #[error("request failed: {reason}")]
    Request {
        /// Why.
        reason: String,
    },
    /// The server is not connected.
    #[error("not connected")]
    NotConnected,
}

/// One MCP server: a handle (cheap to clone; clones share the connection).
#[derive(Clone)]
pub struct McpServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("label", &self.inner.label)
            .field("transport", &self.inner.transport)
            .field("connected", &self.is_initialized())
            .finish()
    }
}

struct Connection {
    peer: Peer<RoleClient>,
    service: RunningService<RoleClient, Handler>,
}

struct Inner {
    label: String,
    transport: McpTransport,
    options: McpServerOptions,
    conn: Mutex<Option<Arc<Connection>>>,
    tools: Mutex<Vec<FunctionTool>>,
    /// Serializes connect and close.
    lifecycle: tokio::sync::Mutex<()>,
    /// Serializes tool-list refreshes.
    refresh: tokio::sync::Mutex<()>,
    /// Bumped each time the tool list is replaced.
    tools_version: watch::Sender<u64>,
    /// Sessions and agents holding the server (see `acquire` / `release`).
    users: Mutex<usize>,
}

/// The client side of the connection: answers the server's notifications.
struct Handler {
    server: Weak<Inner>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("livekit-agents", env!("CARGO_PKG_VERSION")),
        )
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        // The refresh sends a request on this connection: it must not run inside the
        // connection's notification handling.
        if let Some(inner) = self.server.upgrade() {
            let server = McpServer { inner };
            tracing::debug!(server = %server.label(), "MCP tool list changed");
            tokio::spawn(async move {
                if let Err(e) = server.refresh_tools().await {
                    tracing::warn!(server = %server.label(), error = %e, "could not list the MCP server's tools again");
                }
            });
        }
        std::future::ready(())
    }
}

impl McpServer {
    /// A server started as `command args...`, speaking MCP over stdio.
    pub fn stdio<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(
            McpTransport::Stdio {
                command: command.into(),
                args: args.into_iter().map(Into::into).collect(),
                env: HashMap::new(),
                cwd: None,
            },
            McpServerOptions::default(),
        )
    }

    /// A server at `url` over streamable HTTP.
    pub fn http(url: impl Into<String>) -> Self {
        Self::new(
            McpTransport::StreamableHttp {
                url: url.into(),
                headers: Vec::new(),
            },
            McpServerOptions::default(),
        )
    }

    /// A server with explicit transport and options.
    pub fn new(transport: McpTransport, options: McpServerOptions) -> Self {
        let label = match &transport {
            McpTransport::Stdio { command, .. } => command.clone(),
            McpTransport::StreamableHttp { url, .. } => url::Url::parse(url)
                .map(|u| format!("{}{}", u.host_str().unwrap_or(""), u.path()))
                .unwrap_or_else(|_| "<invalid url>".into()),
        };
        let (tools_version, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                label,
                transport,
                options,
                conn: Mutex::new(None),
                tools: Mutex::new(Vec::new()),
                lifecycle: tokio::sync::Mutex::new(()),
                refresh: tokio::sync::Mutex::new(()),
                tools_version,
                users: Mutex::new(0),
            }),
        }
    }

    /// Adds a header (HTTP servers; ignored for stdio). `Authorization: Bearer …` is supported.
    pub fn with_header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.map_transport(|t| {
            if let McpTransport::StreamableHttp { headers, .. } = t {
                headers.push((name.into(), value.into()));
            }
        })
    }

    /// Adds an environment variable (stdio servers; ignored for HTTP).
    pub fn with_env(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.map_transport(|t| {
            if let McpTransport::Stdio { env, .. } = t {
                env.insert(name.into(), value.into());
            }
        })
    }

    /// Replaces the options.
    pub fn with_options(self, options: McpServerOptions) -> Self {
        let transport = self.inner.transport.clone();
        Self::new(transport, options)
    }

    fn map_transport(self, f: impl FnOnce(&mut McpTransport)) -> Self {
        let mut transport = self.inner.transport.clone();
        f(&mut transport);
        Self::new(transport, self.inner.options.clone())
    }

    /// A short name for logs and errors: the command, or the URL's host and path (no query,
    /// no credentials).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The options.
    pub fn options(&self) -> &McpServerOptions {
        &self.inner.options
    }

    /// Whether the server is connected.
    pub fn is_initialized(&self) -> bool {
        self.inner
            .conn
            .lock()
            .as_ref()
            .is_some_and(|c| !c.service.is_closed())
    }

    /// The server's tools as function tools (empty until [`initialize`](Self::initialize)
    /// succeeded, and after [`close`](Self::close)).
    pub fn tools(&self) -> Vec<FunctionTool> {
        self.inner.tools.lock().clone()
    }

    /// A receiver whose value changes each time the tool list is replaced (initial listing and
    /// each `tools/list_changed`).
    pub fn tools_updates(&self) -> watch::Receiver<u64> {
        self.inner.tools_version.subscribe()
    }

    /// Connects (starts the command or opens the HTTP session), runs the `initialize`
    /// handshake and lists the tools. Does nothing when already connected.
    pub async fn initialize(&self) -> Result<(), McpError> {
        let _guard = self.inner.lifecycle.lock().await;
        if self.is_initialized() {
            return Ok(());
        }
        let timeout = self.inner.options.connect_timeout;
        let service = tokio::time::timeout(timeout, self.connect())
            .await
            .map_err(|_| McpError::Timeout(timeout))??;
        let peer = service.peer().clone();
        *self.inner.conn.lock() = Some(Arc::new(Connection { peer, service }));
        if let Err(e) = self.refresh_tools().await {
            self.disconnect().await;
            return Err(e);
        }
        tracing::info!(server = %self.label(), tools = self.inner.tools.lock().len(), "MCP server connected");
        Ok(())
    }

    async fn connect(&self) -> Result<RunningService<RoleClient, Handler>, McpError> {
        let handler = Handler {
            server: Arc::downgrade(&self.inner),
        };
        match &self.inner.transport {
            McpTransport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).envs(env);
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (transport, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|source| McpError::Spawn {
                        command: command.clone(),
                        source,
                    })?;
                if let Some(stderr) = stderr {
                    let label = self.inner.label.clone();
                    tokio::spawn(forward_stderr(label, stderr));
                }
                handler
                    .serve(transport)
                    .await
                    .map_err(|e| McpError::Initialize {
                        reason: e.to_string(),
                    })
            }
            McpTransport::StreamableHttp { url, headers } => {
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                let mut custom = HashMap::new();
                for (name, value) in headers {
                    if name.eq_ignore_ascii_case("authorization") {
                        let token = value.strip_prefix("Bearer ").unwrap_or(value);
                        config = config.auth_header(token.to_owned());
                        continue;
                    }
                    let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        McpError::Http {
                            reason: format!("invalid header name {name:?}"),
                        }
                    })?;
                    let mut value =
                        http::HeaderValue::from_str(value).map_err(|_| McpError::Http {
                            reason: format!("invalid value for header {name}"),
                        })?;
                    value.set_sensitive(true);
                    custom.insert(name, value);
                }
                config = config.custom_headers(custom);
                let transport = StreamableHttpClientTransport::with_client(http_client()?, config);
                handler
                    .serve(transport)
                    .await
                    .map_err(|e| McpError::Initialize {
                        reason: e.to_string(),
                    })
            }
        }
    }

    fn connection(&self) -> Option<Arc<Connection>> {
        self.inner.conn.lock().clone()
    }

    /// Lists the tools again and replaces [`tools`](Self::tools).
    pub async fn refresh_tools(&self) -> Result<(), McpError> {
        let _guard = self.inner.refresh.lock().await;
        let conn = self.connection().ok_or(McpError::NotConnected)?;
        let timeout = self.inner.options.timeout;
        let listed = tokio::time::timeout(timeout, conn.peer.list_all_tools())
            .await
            .map_err(|_| McpError::Timeout(timeout))?
            .map_err(|e| McpError::Request {
                reason: e.to_string(),
            })?;
        let mut tools = Vec::with_capacity(listed.len());
        for tool in listed {
            let name = tool.name.to_string();
            if let Some(allowed) = &self.inner.options.allowed_tools {
                if !allowed.iter().any(|a| a == &name) {
                    continue;
                }
            }
            let mut parameters = Value::Object((*tool.input_schema).clone());
            if let Some(obj) = parameters.as_object_mut() {
                obj.remove("$schema");
            }
            let definition = ToolDefinition {
                name: name.clone(),
                description: tool.description.as_deref().unwrap_or_default().to_owned(),
                parameters,
            };
            if let Err(e) = definition.validate() {
                tracing::warn!(server = %self.label(), error = %e, "skipping an MCP tool the model could not use");
                continue;
            }
            if tools.iter().any(|t: &FunctionTool| t.name() == name) {
                tracing::warn!(server = %self.label(), tool = %name, "duplicate MCP tool name; keeping the first");
                continue;
            }
            tools.push(self.function_tool(definition));
        }
        *self.inner.tools.lock() = tools;
        self.inner.tools_version.send_modify(|v| *v += 1);
        Ok(())
    }

    fn function_tool(&self, definition: ToolDefinition) -> FunctionTool {
        let server = Arc::downgrade(&self.inner);
        let name = definition.name.clone();
        let label = self.inner.label.clone();
        FunctionTool::raw(
            definition.name,
            definition.description,
            definition.parameters,
            move |_ctx: RunContext, args: Value| {
                let server = server.upgrade().map(|inner| McpServer { inner });
                let name = name.clone();
                let label = label.clone();
                async move {
                    let server = server.ok_or_else(|| super::unavailable(&label))?;
                    server.call_tool(&name, args).await
                }
            },
        )
    }

    /// Calls a tool and converts the result for the model (the options' resolver, or
    /// [`McpToolResult::into_output`]). Failures are [`ToolError`]s with a message for the model.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<ToolOutput, ToolError> {
        let result = self.call_tool_raw(name, arguments).await.map_err(|e| {
            tracing::warn!(server = %self.label(), tool = %name, error = %e, "MCP tool call failed");
            match e {
                McpError::NotConnected => super::unavailable(&self.inner.label),
                McpError::Timeout(t) => ToolError::new(format!(
                    "Tool '{name}' did not answer within {:.1} s.",
                    t.as_secs_f64()
                )),
                other => ToolError::new(format!("Tool '{name}' failed: {other}")),
            }
        })?;
        match &self.inner.options.result_resolver {
            Some(resolve) => resolve(result),
            None => result.into_output(),
        }
    }

    /// Calls a tool and returns what the server answered.
    pub async fn call_tool_raw(
        &self,
        name: &str,
        arguments: Value,
    ) -> Result<McpToolResult, McpError> {
        let conn = self.connection().ok_or(McpError::NotConnected)?;
        if conn.service.is_closed() {
            return Err(McpError::NotConnected);
        }
        let object: JsonObject = match &arguments {
            Value::Object(map) => map.clone(),
            _ => JsonObject::new(),
        };
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = Some(object);
        let timeout = self.inner.options.timeout;
        // Dropping the request on timeout sends `notifications/cancelled` to the server.
        let result = tokio::time::timeout(timeout, conn.peer.call_tool(params))
            .await
            .map_err(|_| McpError::Timeout(timeout))?
            .map_err(|e| McpError::Request {
                reason: e.to_string(),
            })?;
        let content = result
            .content
            .into_iter()
            .map(|block| McpContent::from_json(serde_json::to_value(block).unwrap_or(Value::Null)))
            .collect();
        Ok(McpToolResult {
            tool_name: name.to_owned(),
            arguments,
            content,
            structured_content: result.structured_content,
            is_error: result.is_error.unwrap_or(false),
        })
    }

    /// Counts one more user (a session or an agent) and connects if needed.
    pub(crate) async fn acquire(&self) -> Result<(), McpError> {
        *self.inner.users.lock() += 1;
        self.initialize().await
    }

    /// Counts one user less; the last one closes the connection.
    pub(crate) async fn release(&self) {
        {
            let mut users = self.inner.users.lock();
            *users = users.saturating_sub(1);
        }
        let _guard = self.inner.lifecycle.lock().await;
        // Checked under the lifecycle lock: a user that arrived meanwhile keeps it open.
        if *self.inner.users.lock() == 0 {
            self.disconnect().await;
        }
    }

    /// Closes the connection (the command is stopped). Its tools disappear; calls made later
    /// return an "unavailable" tool error. [`initialize`](Self::initialize) connects again.
    pub async fn close(&self) {
        let _guard = self.inner.lifecycle.lock().await;
        self.disconnect().await;
    }

    async fn disconnect(&self) {
        self.inner.tools.lock().clear();
        let conn = self.inner.conn.lock().take();
        if let Some(conn) = conn {
            // Other holders (in-flight calls) keep the Arc briefly; cancelling the token stops
            // the connection either way.
            conn.service.cancellation_token().cancel();
            if let Ok(conn) = Arc::try_unwrap(conn) {
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.service.cancel()).await;
            }
            tracing::debug!(server = %self.label(), "MCP server closed");
        }
    }
}

async fn forward_stderr(label: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // At most 8 KiB per line: a server printing without newlines cannot grow the buffer.
        match (&mut reader).take(8192).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::debug!(server = %label, "{}", text.trim_end());
            }
        }
    }
}

/// A reqwest 0.13 client with rustls on ring and the system's roots (the same TLS setup as the
/// rest of the crate: a process with two rustls providers and no default fails every TLS
/// config built without an explicit provider).
fn http_client() -> Result<reqwest_013::Client, McpError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| McpError::Http {
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest_013::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| McpError::Http {
            reason: e.to_string(),
        })
}
