//! Chat Completions LLM ([`Llm`]) for OpenAI and OpenAI-compatible providers.
//!
//! Each request is `POST {base_url}/chat/completions` with `stream: true` and
//! `stream_options.include_usage`, read as server-sent events. Text deltas are forwarded as they
//! arrive; tool-call fragments are stitched per `index` and emitted whole (one chunk per call)
//! when the choice finishes; the final usage chunk becomes [`ChatChunk::usage`] (with cached
//! prompt tokens).
//!
//! Errors: 401/403 are not retried; 408/409/429/5xx and dropped connections are retried by the
//! core ([`LlmStream::spawn`]) with [`ApiConnectOptions`](livekit_agents::types::ApiConnectOptions),
//! but only while nothing was emitted. A body that is not a valid event stream, or a chunk that
//! is not valid JSON, is an [`ApiError::Protocol`]. A stream that ends without `[DONE]` and
//! without a finished choice is a (retryable) connection error.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use livekit_agents::llm::{
    self as core_llm, ChatChunk, ChatRequest, ChunkSender, CompletionUsage, FunctionToolCall,
    LlmStream, LlmStreamTask, ReasoningEffort, ToolChoice,
};
use livekit_agents::types::ApiError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::chat_format::{to_messages, to_tools};
use crate::client::{
    error_from_response, http_client, parse_base_url, redacted, resolve_api_key, transport_error,
    ApiKey, Auth, ConfigError, Endpoint,
};
use crate::sse::SseDecoder;

/// Default chat model: `gpt-6-luna`, OpenAI's named successor of `gpt-4o-mini` (which shuts
/// down on 2027-01-14; see `docs/providers.md`). The reference's default was `gpt-4o-mini`.
pub const DEFAULT_LLM_MODEL: &str = "gpt-6-luna";
/// Default sampling temperature (the LiveKit OpenAI LLM docs: `temperature=0.8`).
pub const DEFAULT_TEMPERATURE: f32 = 0.8;

/// Options of an [`Llm`]. `Default` gives the documented OpenAI defaults.
#[derive(Clone, PartialEq)]
pub struct LlmOptions {
    /// Model name. Default `gpt-6-luna`.
    pub model: String,
    /// API key; `None` reads the provider's environment variable (`OPENAI_API_KEY`).
    pub api_key: Option<String>,
    /// API root; `None` reads `OPENAI_BASE_URL`, else `https://api.openai.com/v1`.
    pub base_url: Option<String>,
    /// Sampling temperature (0 to 2). Default 0.8. Not sent to reasoning models (`o1`, `o3`,
    /// `o4-*`, `gpt-5*`, `gpt-6*`, so not to the default model), which reject it, unless a
    /// request sets it explicitly.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Whether the model may call several tools in one turn (sent only with tools).
    pub parallel_tool_calls: Option<bool>,
    /// Tool choice when a request does not set one (sent only with tools). Default `auto`.
    pub tool_choice: ToolChoice,
    /// Maximum tokens to generate.
    pub max_completion_tokens: Option<u32>,
    /// Reasoning effort for reasoning models. Unset: `none` for the models that accept it
    /// (GPT-5.1 and later, GPT-6; the lowest latency, and required by GPT-6 for function
    /// calling over Chat Completions), else the model's default.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Send tools with `"strict": true` when their schema allows it. Default `true` for
    /// OpenAI and Azure, `false` for other providers (not all of them accept the flag).
    pub strict_tool_schema: bool,
    /// End-user id for abuse monitoring (`user`).
    pub user: Option<String>,
    /// Whether OpenAI stores the completion (`store`).
    pub store: Option<bool>,
    /// Request metadata (`metadata`).
    pub metadata: Option<Map<String, Value>>,
    /// Service tier (`service_tier`), e.g. `auto`, `flex`, `priority`.
    pub service_tier: Option<String>,
    /// Extra fields merged into every request body (provider-specific options).
    pub extra_body: Map<String, Value>,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            model: DEFAULT_LLM_MODEL.to_string(),
            api_key: None,
            base_url: None,
            temperature: Some(DEFAULT_TEMPERATURE),
            top_p: None,
            parallel_tool_calls: None,
            tool_choice: ToolChoice::Auto,
            max_completion_tokens: None,
            reasoning_effort: None,
            strict_tool_schema: true,
            user: None,
            store: None,
            metadata: None,
            service_tier: None,
            extra_body: Map::new(),
        }
    }
}

impl std::fmt::Debug for LlmOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmOptions")
            .field("model", &self.model)
            .field("api_key", &redacted(&self.api_key))
            .field("base_url", &self.base_url)
            .field("temperature", &self.temperature)
            .field("top_p", &self.top_p)
            .field("parallel_tool_calls", &self.parallel_tool_calls)
            .field("tool_choice", &self.tool_choice)
            .field("max_completion_tokens", &self.max_completion_tokens)
            .field("reasoning_effort", &self.reasoning_effort)
            .field("strict_tool_schema", &self.strict_tool_schema)
            .field("user", &self.user)
            .field("store", &self.store)
            .field("service_tier", &self.service_tier)
            .finish_non_exhaustive()
    }
}

/// Options of an OpenAI-compatible provider constructor (`Llm::with_groq`, …). Unset fields
/// take the provider's documented defaults.
#[derive(Clone, Default, PartialEq)]
pub struct CompatibleOptions {
    /// Model; `None` uses the provider's default model.
    pub model: Option<String>,
    /// API key; `None` reads the provider's environment variable.
    pub api_key: Option<String>,
    /// API root; `None` uses the provider's public URL.
    pub base_url: Option<String>,
    /// Temperature; `None` uses the provider's documented default.
    pub temperature: Option<f32>,
    /// Whether the model may call several tools in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// Tool choice (default `auto`).
    pub tool_choice: Option<ToolChoice>,
}

impl std::fmt::Debug for CompatibleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompatibleOptions")
            .field("model", &self.model)
            .field("api_key", &redacted(&self.api_key))
            .field("base_url", &self.base_url)
            .field("temperature", &self.temperature)
            .field("parallel_tool_calls", &self.parallel_tool_calls)
            .field("tool_choice", &self.tool_choice)
            .finish()
    }
}

/// Azure OpenAI options for [`Llm::with_azure`].
#[derive(Clone, PartialEq)]
pub struct AzureOptions {
    /// Deployment name; `None` uses the model name.
    pub azure_deployment: Option<String>,
    /// Resource endpoint, e.g. `https://my-resource.openai.azure.com`; `None` reads
    /// `AZURE_OPENAI_ENDPOINT`.
    pub azure_endpoint: Option<String>,
    /// API key (`api-key` header); `None` reads `AZURE_OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// Microsoft Entra ID token (Bearer); `None` reads `AZURE_OPENAI_ENTRA_TOKEN`. Used when
    /// no API key is available.
    pub entra_token: Option<String>,
    /// API version; `None` reads `OPENAI_API_VERSION`, else `2024-10-01-preview`.
    pub api_version: Option<String>,
    /// Model name (reported in metrics). Default `gpt-6-luna`.
    pub model: Option<String>,
    /// Temperature. Default 0.1 (the LiveKit Azure docs).
    pub temperature: Option<f32>,
    /// Whether the model may call several tools in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// Tool choice (default `auto`).
    pub tool_choice: Option<ToolChoice>,
}

impl Default for AzureOptions {
    fn default() -> Self {
        Self {
            azure_deployment: None,
            azure_endpoint: None,
            api_key: None,
            entra_token: None,
            api_version: None,
            model: None,
            temperature: Some(0.1),
            parallel_tool_calls: None,
            tool_choice: None,
        }
    }
}

impl std::fmt::Debug for AzureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureOptions")
            .field("azure_deployment", &self.azure_deployment)
            .field("azure_endpoint", &self.azure_endpoint)
            .field("api_key", &redacted(&self.api_key))
            .field("entra_token", &redacted(&self.entra_token))
            .field("api_version", &self.api_version)
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .finish_non_exhaustive()
    }
}

/// Where an Azure OpenAI deployment lives and how to authenticate, for `Stt::with_azure` and
/// `Tts::with_azure` (the LLM takes the same fields in [`AzureOptions`]).
#[derive(Clone, Default, PartialEq)]
pub struct AzureConnection {
    /// Deployment name; `None` uses the model name.
    pub azure_deployment: Option<String>,
    /// Resource endpoint, e.g. `https://my-resource.openai.azure.com`; `None` reads
    /// `AZURE_OPENAI_ENDPOINT`.
    pub azure_endpoint: Option<String>,
    /// API key (`api-key` header); `None` reads `AZURE_OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// Microsoft Entra ID token (Bearer); `None` reads `AZURE_OPENAI_ENTRA_TOKEN`. Used when
    /// no API key is available.
    pub entra_token: Option<String>,
    /// API version; `None` reads `OPENAI_API_VERSION`, else `2024-10-01-preview`.
    pub api_version: Option<String>,
}

impl std::fmt::Debug for AzureConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureConnection")
            .field("azure_deployment", &self.azure_deployment)
            .field("azure_endpoint", &self.azure_endpoint)
            .field("api_key", &redacted(&self.api_key))
            .field("entra_token", &redacted(&self.entra_token))
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl AzureConnection {
    /// `{azure_endpoint}/openai/deployments/{deployment}` with `api-version` and the key.
    pub(crate) fn endpoint(self, model: &str) -> Result<Endpoint, ConfigError> {
        let endpoint = azure_endpoint(self.azure_endpoint.as_deref())?;
        let auth = azure_auth(self.api_key.as_deref(), self.entra_token.as_deref())?;
        let deployment = self.azure_deployment.unwrap_or_else(|| model.to_string());
        let api_version = azure_api_version(self.api_version);
        Ok(Endpoint {
            base_url: crate::client::join_path(
                &endpoint,
                &format!("openai/deployments/{deployment}"),
            ),
            auth,
            query: vec![("api-version".into(), api_version)],
            headers: Vec::new(),
            provider: "Azure OpenAI".into(),
        })
    }
}

/// OpenRouter options for [`Llm::with_openrouter`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenRouterOptions {
    /// Model, key, URL and sampling options (default model `openrouter/auto`).
    pub base: CompatibleOptions,
    /// Your site URL, sent as `HTTP-Referer` (OpenRouter analytics).
    pub site_url: Option<String>,
    /// Your app name, sent as `X-Title`.
    pub app_name: Option<String>,
    /// Models to fall back to, in order: sent as `models`, after the primary model.
    pub fallback_models: Vec<String>,
    /// Provider routing preferences (`provider`: `order`, `allow_fallbacks`, `sort`, …).
    pub provider: Option<Value>,
    /// Web search results added to the prompt (OpenRouter's `web` plugin).
    pub web_search: Option<OpenRouterWebPlugin>,
}

/// OpenRouter's web search plugin (`{"id": "web", …}` in `plugins`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenRouterWebPlugin {
    /// Number of results (OpenRouter's default when unset).
    pub max_results: Option<u32>,
    /// Prompt introducing the results.
    pub search_prompt: Option<String>,
}

/// The Azure API version used when none is given.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-01-preview";

/// A Chat Completions LLM (OpenAI or an OpenAI-compatible provider). Cheap to clone and share.
///
/// ```no_run
/// use livekit_plugins_openai::{Llm, LlmOptions};
///
/// let llm = Llm::new(LlmOptions::default())?.with_model("gpt-4.1-mini");
/// let groq = Llm::with_groq(Default::default())?;
/// # Ok::<(), livekit_plugins_openai::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Llm {
    opts: LlmOptions,
    endpoint: Endpoint,
    http: reqwest::Client,
    provider: &'static str,
    max_tokens_field: &'static str,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("provider", &self.provider)
            .field("base_url", &self.endpoint.base_url.as_str())
            .field("options", &self.opts)
            .finish()
    }
}

/// Where a compatible provider lives and what it defaults to.
struct Provider {
    name: &'static str,
    display: &'static str,
    key_env: Option<&'static str>,
    base_url: &'static str,
    model: &'static str,
    temperature: Option<f32>,
    /// Reasoning effort sent when the options set none.
    reasoning_effort: Option<ReasoningEffort>,
}

const CEREBRAS: Provider = Provider {
    name: "cerebras",
    display: "Cerebras",
    key_env: Some("CEREBRAS_API_KEY"),
    base_url: "https://api.cerebras.ai/v1",
    model: "gpt-oss-120b",
    temperature: Some(1.0),
    reasoning_effort: None,
};
const DEEPSEEK: Provider = Provider {
    name: "deepseek",
    display: "DeepSeek",
    key_env: Some("DEEPSEEK_API_KEY"),
    base_url: "https://api.deepseek.com/v1",
    model: "deepseek-flash",
    temperature: Some(1.0),
    reasoning_effort: None,
};
const FIREWORKS: Provider = Provider {
    name: "fireworks",
    display: "Fireworks",
    key_env: Some("FIREWORKS_API_KEY"),
    base_url: "https://api.fireworks.ai/inference/v1",
    model: "accounts/fireworks/models/llama-v3p3-70b-instruct",
    temperature: Some(1.0),
    reasoning_effort: None,
};
const GROQ: Provider = Provider {
    name: "groq",
    display: "Groq",
    key_env: Some("GROQ_API_KEY"),
    base_url: "https://api.groq.com/openai/v1",
    model: "openai/gpt-oss-120b",
    temperature: Some(1.0),
    reasoning_effort: None,
};
const OLLAMA: Provider = Provider {
    name: "ollama",
    display: "Ollama",
    key_env: None,
    base_url: "http://localhost:11434/v1",
    model: "llama3.1",
    temperature: None,
    reasoning_effort: None,
};
const OPENROUTER: Provider = Provider {
    name: "openrouter",
    display: "OpenRouter",
    key_env: Some("OPENROUTER_API_KEY"),
    base_url: "https://openrouter.ai/api/v1",
    model: "openrouter/auto",
    temperature: None,
    reasoning_effort: None,
};
const PERPLEXITY: Provider = Provider {
    name: "perplexity",
    display: "Perplexity",
    key_env: Some("PERPLEXITY_API_KEY"),
    base_url: "https://api.perplexity.ai",
    model: "sonar",
    temperature: Some(1.0),
    reasoning_effort: None,
};
const TELNYX: Provider = Provider {
    name: "telnyx",
    display: "Telnyx",
    key_env: Some("TELNYX_API_KEY"),
    base_url: "https://api.telnyx.com/v2/ai",
    model: "meta-llama/Meta-Llama-3.1-70B-Instruct",
    temperature: Some(0.1),
    reasoning_effort: None,
};
const TOGETHER: Provider = Provider {
    name: "together",
    display: "Together",
    key_env: Some("TOGETHER_API_KEY"),
    base_url: "https://api.together.xyz/v1",
    model: "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    temperature: Some(1.0),
    reasoning_effort: None,
};
const XAI: Provider = Provider {
    name: "xai",
    display: "xAI",
    key_env: Some("XAI_API_KEY"),
    base_url: "https://api.x.ai/v1",
    model: "grok-4.3",
    temperature: Some(1.0),
    reasoning_effort: Some(ReasoningEffort::None),
};

impl Llm {
    /// An OpenAI LLM. The key comes from `options.api_key` or `OPENAI_API_KEY`; the API root
    /// from `options.base_url`, `OPENAI_BASE_URL` or `https://api.openai.com/v1`.
    pub fn new(options: LlmOptions) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::openai(
            options.api_key.as_deref(),
            options.base_url.as_deref(),
            "OpenAI",
        )?;
        let opts = LlmOptions {
            api_key: None,
            ..options
        };
        Ok(Self {
            opts,
            endpoint,
            http: http_client(),
            provider: "openai",
            max_tokens_field: "max_completion_tokens",
        })
    }

    fn compatible(p: &Provider, o: CompatibleOptions) -> Result<Self, ConfigError> {
        let auth = match (p.key_env, o.api_key.as_deref()) {
            (Some(env), explicit) => Auth::Bearer(resolve_api_key(explicit, env)?),
            (None, Some(key)) if !key.trim().is_empty() => Auth::Bearer(ApiKey::new(key.trim())),
            (None, _) => Auth::None,
        };
        let base = match o.base_url.as_deref() {
            Some(url) => parse_base_url(url)?,
            None => parse_base_url(p.base_url)?,
        };
        let opts = LlmOptions {
            model: o.model.unwrap_or_else(|| p.model.to_string()),
            temperature: o.temperature.or(p.temperature),
            parallel_tool_calls: o.parallel_tool_calls,
            tool_choice: o.tool_choice.unwrap_or_default(),
            strict_tool_schema: false,
            reasoning_effort: p.reasoning_effort,
            ..LlmOptions::default()
        };
        Ok(Self {
            opts,
            endpoint: Endpoint {
                base_url: base,
                auth,
                query: Vec::new(),
                headers: Vec::new(),
                provider: p.display.to_string(),
            },
            http: http_client(),
            provider: p.name,
            max_tokens_field: "max_tokens",
        })
    }

    /// Azure OpenAI: `{azure_endpoint}/openai/deployments/{deployment}/chat/completions
    /// ?api-version=…`, authenticated with `api-key` (`AZURE_OPENAI_API_KEY`) or an Entra
    /// token (`AZURE_OPENAI_ENTRA_TOKEN`). Temperature defaults to 0.1.
    pub fn with_azure(options: AzureOptions) -> Result<Self, ConfigError> {
        let model = options
            .model
            .unwrap_or_else(|| DEFAULT_LLM_MODEL.to_string());
        let endpoint = AzureConnection {
            azure_deployment: options.azure_deployment,
            azure_endpoint: options.azure_endpoint,
            api_key: options.api_key,
            entra_token: options.entra_token,
            api_version: options.api_version,
        }
        .endpoint(&model)?;
        let opts = LlmOptions {
            model,
            temperature: options.temperature,
            parallel_tool_calls: options.parallel_tool_calls,
            tool_choice: options.tool_choice.unwrap_or_default(),
            ..LlmOptions::default()
        };
        Ok(Self {
            opts,
            endpoint,
            http: http_client(),
            provider: "azure",
            max_tokens_field: "max_completion_tokens",
        })
    }

    /// Cerebras (`CEREBRAS_API_KEY`; default model `gpt-oss-120b`, temperature 1.0).
    pub fn with_cerebras(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&CEREBRAS, options)
    }

    /// DeepSeek (`DEEPSEEK_API_KEY`; default model `deepseek-flash`, temperature 1.0).
    pub fn with_deepseek(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&DEEPSEEK, options)
    }

    /// Fireworks (`FIREWORKS_API_KEY`; default model
    /// `accounts/fireworks/models/llama-v3p3-70b-instruct`, temperature 1.0).
    pub fn with_fireworks(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&FIREWORKS, options)
    }

    /// Groq (`GROQ_API_KEY`; default model `openai/gpt-oss-120b`, temperature 1.0).
    pub fn with_groq(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&GROQ, options)
    }

    /// A local Ollama server (`http://localhost:11434/v1`, default model `llama3.1`, no key
    /// needed).
    pub fn with_ollama(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&OLLAMA, options)
    }

    /// OpenRouter (`OPENROUTER_API_KEY`; default model `openrouter/auto`), with its analytics
    /// headers, fallback models and provider routing.
    pub fn with_openrouter(options: OpenRouterOptions) -> Result<Self, ConfigError> {
        let mut llm = Self::compatible(&OPENROUTER, options.base)?;
        if let Some(site) = options.site_url {
            llm.endpoint.headers.push(("HTTP-Referer".into(), site));
        }
        if let Some(app) = options.app_name {
            llm.endpoint.headers.push(("X-Title".into(), app));
        }
        if !options.fallback_models.is_empty() {
            // OpenRouter tries `models` in order and ignores `model` when `models` is given,
            // so the primary model leads the list.
            let mut models = vec![llm.opts.model.clone()];
            models.extend(
                options
                    .fallback_models
                    .into_iter()
                    .filter(|m| *m != llm.opts.model),
            );
            llm.opts.extra_body.insert("models".into(), json!(models));
        }
        if let Some(provider) = options.provider {
            llm.opts.extra_body.insert("provider".into(), provider);
        }
        if let Some(web) = options.web_search {
            let mut plugin = json!({"id": "web"});
            if let Some(n) = web.max_results {
                plugin["max_results"] = json!(n);
            }
            if let Some(prompt) = web.search_prompt {
                plugin["search_prompt"] = json!(prompt);
            }
            llm.opts
                .extra_body
                .insert("plugins".into(), json!([plugin]));
        }
        Ok(llm)
    }

    /// Perplexity (`PERPLEXITY_API_KEY`; default model `sonar`, temperature 1.0).
    pub fn with_perplexity(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&PERPLEXITY, options)
    }

    /// Telnyx (`TELNYX_API_KEY`; default model `meta-llama/Meta-Llama-3.1-70B-Instruct`,
    /// temperature 0.1).
    pub fn with_telnyx(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&TELNYX, options)
    }

    /// Together AI (`TOGETHER_API_KEY`; default model
    /// `meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo`, temperature 1.0).
    pub fn with_together(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&TOGETHER, options)
    }

    /// xAI (`XAI_API_KEY`; default model `grok-4.3` with reasoning effort `none`, xAI's
    /// replacement for its retired non-reasoning models; temperature 1.0).
    pub fn with_x_ai(options: CompatibleOptions) -> Result<Self, ConfigError> {
        Self::compatible(&XAI, options)
    }

    /// Sends requests to another API root (a proxy, a gateway, a local test server).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, ConfigError> {
        self.endpoint.base_url = parse_base_url(base_url)?;
        Ok(self)
    }

    /// Uses another model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.opts.model = model.into();
        self
    }

    /// Sets the default temperature (`None`: the provider's default).
    pub fn with_temperature(mut self, temperature: Option<f32>) -> Self {
        self.opts.temperature = temperature;
        self
    }

    /// Changes the options (the key and base URL are fixed at construction).
    pub fn with_options(mut self, update: impl FnOnce(&mut LlmOptions)) -> Self {
        update(&mut self.opts);
        self.opts.api_key = None;
        self
    }

    /// The current options (without the API key).
    pub fn options(&self) -> &LlmOptions {
        &self.opts
    }

    /// The request body for `request` (what [`core_llm::Llm::chat`] posts).
    pub fn request_body(&self, request: &ChatRequest) -> Value {
        let o = &self.opts;
        let mut body = Map::new();
        body.insert("model".into(), json!(o.model));
        body.insert("messages".into(), json!(to_messages(&request.chat_ctx)));
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));

        let temperature = match request.options.temperature {
            Some(t) => Some(t),
            None if is_reasoning_model(&o.model) => None,
            None => o.temperature,
        };
        if let Some(t) = temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = o.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(n) = request.options.max_tokens.or(o.max_completion_tokens) {
            body.insert(self.max_tokens_field.into(), json!(n));
        }
        let effort = request
            .options
            .reasoning_effort
            .or(o.reasoning_effort)
            .or_else(|| accepts_no_reasoning(&o.model).then_some(ReasoningEffort::None));
        if let Some(effort) = effort {
            body.insert("reasoning_effort".into(), json!(effort));
        }
        if !request.tools.is_empty() {
            body.insert(
                "tools".into(),
                json!(to_tools(&request.tools, o.strict_tool_schema)),
            );
            let choice = request.tool_choice.clone().unwrap_or(o.tool_choice.clone());
            body.insert("tool_choice".into(), json!(choice));
            if let Some(p) = request
                .options
                .parallel_tool_calls
                .or(o.parallel_tool_calls)
            {
                body.insert("parallel_tool_calls".into(), json!(p));
            }
        }
        if let Some(user) = &o.user {
            body.insert("user".into(), json!(user));
        }
        if let Some(store) = o.store {
            body.insert("store".into(), json!(store));
        }
        if let Some(metadata) = &o.metadata {
            body.insert("metadata".into(), Value::Object(metadata.clone()));
        }
        if let Some(tier) = &o.service_tier {
            body.insert("service_tier".into(), json!(tier));
        }
        for (k, v) in o.extra_body.iter().chain(request.options.extra.iter()) {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

/// Whether the model is a reasoning model that rejects a non-default temperature.
fn is_reasoning_model(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    ["o1", "o3", "o4", "gpt-5", "gpt-6"]
        .iter()
        .any(|p| m.starts_with(p))
}

/// Whether an OpenAI model accepts `reasoning_effort: "none"` (GPT-5.1 and later, GPT-6),
/// which it then gets by default.
fn accepts_no_reasoning(model: &str) -> bool {
    let m = model.rsplit('/').next().unwrap_or(model);
    if m.starts_with("gpt-6") {
        return true;
    }
    m.strip_prefix("gpt-5.")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|minor| minor.parse::<u32>().ok())
        .is_some_and(|minor| minor >= 1)
}

pub(crate) fn azure_endpoint(explicit: Option<&str>) -> Result<url::Url, ConfigError> {
    let raw = match explicit {
        Some(e) => e.to_string(),
        None => std::env::var("AZURE_OPENAI_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .ok_or(ConfigError::MissingSetting {
                what: "Azure OpenAI endpoint",
                env: "AZURE_OPENAI_ENDPOINT",
            })?,
    };
    parse_base_url(&raw)
}

pub(crate) fn azure_auth(api_key: Option<&str>, entra: Option<&str>) -> Result<Auth, ConfigError> {
    if let Ok(key) = resolve_api_key(api_key, "AZURE_OPENAI_API_KEY") {
        return Ok(Auth::AzureKey(key));
    }
    resolve_api_key(entra, "AZURE_OPENAI_ENTRA_TOKEN")
        .map(Auth::Bearer)
        .map_err(|_| ConfigError::MissingApiKey {
            env: "AZURE_OPENAI_API_KEY",
        })
}

pub(crate) fn azure_api_version(explicit: Option<String>) -> String {
    explicit
        .or_else(|| {
            std::env::var("OPENAI_API_VERSION")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| AZURE_DEFAULT_API_VERSION.to_string())
}

#[async_trait]
impl core_llm::Llm for Llm {
    fn label(&self) -> String {
        "openai.LLM".to_string()
    }

    fn model(&self) -> String {
        self.opts.model.clone()
    }

    fn provider(&self) -> String {
        self.provider.to_string()
    }

    fn chat(&self, request: ChatRequest) -> LlmStream {
        let task = CompletionTask {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            body: self.request_body(&request),
            timeout: request.conn.timeout,
        };
        LlmStream::spawn(core_llm::Llm::label(self), request.conn, task)
    }
}

/// One attempt of a streamed completion.
struct CompletionTask {
    http: reqwest::Client,
    endpoint: Endpoint,
    body: Value,
    timeout: std::time::Duration,
}

#[async_trait]
impl LlmStreamTask for CompletionTask {
    async fn run(&mut self, out: &ChunkSender) -> Result<(), ApiError> {
        let provider = self.endpoint.provider.clone();
        let request = self
            .endpoint
            .post(&self.http, "chat/completions")?
            .header(http::header::ACCEPT, "text/event-stream")
            .json(&self.body);
        let response = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => return Err(ApiError::Timeout(self.timeout)),
            Ok(Err(e)) => return Err(transport_error(&provider, &e, self.timeout)),
            Ok(Ok(r)) => r,
        };
        if !response.status().is_success() {
            return Err(error_from_response(&provider, response).await);
        }
        let mut body = response.bytes_stream();
        let mut decoder = SseDecoder::default();
        let mut parser = ChunkParser::default();
        // Idle deadline: `timeout` without an event (bytes that complete no event, such as
        // keep-alive comments, do not count) ends the attempt with a timeout.
        let mut idle_deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let next = match tokio::time::timeout_at(idle_deadline, body.next()).await {
                Err(_) => return Err(ApiError::Timeout(self.timeout)),
                Ok(next) => next,
            };
            let events = match next {
                Some(Ok(bytes)) => decoder
                    .push(&bytes)
                    .map_err(|e| ApiError::protocol(format!("{provider}: {e}")))?,
                Some(Err(e)) => {
                    return Err(ApiError::connection(format!(
                        "{provider} stream interrupted: {e}"
                    )))
                }
                None => {
                    let last = decoder
                        .finish()
                        .map_err(|e| ApiError::protocol(format!("{provider}: {e}")))?;
                    for chunk in last
                        .map(|ev| parser.event(&ev.data))
                        .transpose()?
                        .unwrap_or_default()
                    {
                        if !out.send(chunk).await {
                            return Ok(());
                        }
                    }
                    if parser.done {
                        return Ok(());
                    }
                    if parser.finished_choice {
                        // The choice finished but `[DONE]` never came: keep what we have
                        // (only the usage chunk may be missing).
                        tracing::debug!(provider = %provider, "stream ended without [DONE] after the choice finished");
                        for chunk in parser.flush_calls() {
                            if !out.send(chunk).await {
                                return Ok(());
                            }
                        }
                        return Ok(());
                    }
                    return Err(ApiError::connection(format!(
                        "{provider} stream ended before [DONE] (truncated response)"
                    )));
                }
            };
            if !events.is_empty() {
                idle_deadline = tokio::time::Instant::now() + self.timeout;
            }
            for ev in events {
                for chunk in parser.event(&ev.data)? {
                    if !out.send(chunk).await {
                        return Ok(());
                    }
                }
                if parser.done {
                    return Ok(());
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    id: String,
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: u32,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u32>,
}

#[derive(Debug, Default)]
struct PendingCall {
    call_id: String,
    name: String,
    arguments: String,
}

/// At most this many distinct tool calls are stitched from one response (more are dropped with
/// a warning): the fragments' indexes come from the network.
const MAX_TOOL_CALLS: usize = 128;

/// Turns `data:` payloads into [`ChatChunk`]s, stitching tool-call fragments per index.
#[derive(Debug, Default)]
struct ChunkParser {
    id: String,
    calls: BTreeMap<u32, PendingCall>,
    /// `[DONE]` was received.
    done: bool,
    /// A choice reported a `finish_reason`.
    finished_choice: bool,
    think: ThinkFilter,
}

impl ChunkParser {
    fn event(&mut self, data: &str) -> Result<Vec<ChatChunk>, ApiError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            let mut out = self.flush_text();
            out.extend(self.flush_calls());
            return Ok(out);
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: StreamChunk = serde_json::from_str(data).map_err(|e| {
            ApiError::protocol(format!(
                "malformed completion chunk ({e}): {}",
                crate::client::truncate(data, 200)
            ))
        })?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| error.to_string());
            return Err(ApiError::Connection {
                message: format!("provider error in stream: {message}"),
                retryable: true,
            });
        }
        if !chunk.id.is_empty() {
            self.id = chunk.id.clone();
        }
        let mut out = Vec::new();
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    let text = self.think.push(&text);
                    if !text.is_empty() {
                        out.push(ChatChunk::text(self.id.clone(), text));
                    }
                }
                for call in delta.tool_calls.unwrap_or_default() {
                    self.call_fragment(call);
                }
            }
            if choice.finish_reason.is_some() {
                self.finished_choice = true;
                out.extend(self.flush_text());
                out.extend(self.flush_calls());
            }
        }
        if let Some(u) = chunk.usage {
            out.push(ChatChunk {
                id: self.id.clone(),
                delta: None,
                usage: Some(CompletionUsage {
                    completion_tokens: u.completion_tokens,
                    prompt_tokens: u.prompt_tokens,
                    prompt_cached_tokens: u
                        .prompt_tokens_details
                        .and_then(|d| d.cached_tokens)
                        .unwrap_or(0),
                    total_tokens: u.total_tokens,
                }),
            });
        }
        Ok(out)
    }

    fn call_fragment(&mut self, call: WireToolCall) {
        // Providers that omit `index` send each call whole in one fragment.
        // The index is the provider's number: no arithmetic on it may overflow.
        let index = call.index.unwrap_or_else(|| {
            self.calls
                .keys()
                .next_back()
                .map_or(0, |i| i.saturating_add(1))
        });
        if !self.calls.contains_key(&index) && self.calls.len() >= MAX_TOOL_CALLS {
            tracing::warn!(
                index,
                "more than {MAX_TOOL_CALLS} tool calls in one response; ignored"
            );
            return;
        }
        let pending = self.calls.entry(index).or_default();
        if let Some(id) = call.id.filter(|id| !id.is_empty()) {
            pending.call_id = id;
        }
        if let Some(f) = call.function {
            if let Some(name) = f.name.filter(|n| !n.is_empty()) {
                pending.name = name;
            }
            if let Some(args) = f.arguments {
                pending.arguments.push_str(&args);
            }
        }
    }

    /// Text the think filter was still holding back.
    fn flush_text(&mut self) -> Vec<ChatChunk> {
        let text = self.think.finish();
        if text.is_empty() {
            Vec::new()
        } else {
            vec![ChatChunk::text(self.id.clone(), text)]
        }
    }

    /// The stitched calls, in index order, one chunk per call.
    fn flush_calls(&mut self) -> Vec<ChatChunk> {
        std::mem::take(&mut self.calls)
            .into_values()
            .filter(|c| !c.name.is_empty())
            .map(|c| {
                let call_id = if c.call_id.is_empty() {
                    // 32 characters at most, so the id also fits the Realtime API's limit.
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    format!("call_{}", &id[..27])
                } else {
                    c.call_id
                };
                ChatChunk::tool_calls(
                    self.id.clone(),
                    vec![FunctionToolCall {
                        call_id,
                        name: c.name,
                        arguments: c.arguments,
                    }],
                )
            })
            .collect()
    }
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// Removes a leading `<think>…</think>` block from streamed content (reasoning models served
/// by compatible providers, e.g. DeepSeek R1, put their chain of thought there; it must not be
/// spoken). Text that does not start with the tag passes through unchanged.
#[derive(Debug, Default)]
struct ThinkFilter {
    state: ThinkState,
    held: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ThinkState {
    /// Not yet known whether the content starts with a think block.
    #[default]
    Start,
    /// Inside the think block.
    Thinking,
    /// Just past the think block: whitespace separating it from the answer is dropped.
    AfterThink,
    /// Past it (or there was none).
    Pass,
}

impl ThinkFilter {
    fn push(&mut self, text: &str) -> String {
        match self.state {
            ThinkState::Pass => text.to_string(),
            ThinkState::AfterThink => {
                let rest = text.trim_start();
                if !rest.is_empty() {
                    self.state = ThinkState::Pass;
                }
                rest.to_string()
            }
            ThinkState::Start => {
                self.held.push_str(text);
                let trimmed = self.held.trim_start();
                if trimmed.is_empty()
                    || (trimmed.len() < THINK_OPEN.len() && THINK_OPEN.starts_with(trimmed))
                {
                    return String::new();
                }
                if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                    let rest = rest.to_string();
                    self.held.clear();
                    self.state = ThinkState::Thinking;
                    return self.push(&rest);
                }
                self.state = ThinkState::Pass;
                std::mem::take(&mut self.held)
            }
            ThinkState::Thinking => {
                self.held.push_str(text);
                if let Some(end) = self.held.find(THINK_CLOSE) {
                    let rest = self.held[end + THINK_CLOSE.len()..].to_string();
                    self.held.clear();
                    self.state = ThinkState::AfterThink;
                    return self.push(&rest);
                }
                // Keep only what could still be the start of the closing tag.
                let keep = self.held.len().saturating_sub(THINK_CLOSE.len());
                let mut cut = keep;
                while !self.held.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.held.drain(..cut);
                String::new()
            }
        }
    }

    /// End of content: held text that turned out not to be a think block.
    fn finish(&mut self) -> String {
        match std::mem::take(&mut self.state) {
            ThinkState::Start => std::mem::take(&mut self.held),
            _ => {
                self.held.clear();
                String::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_agents::llm::{ChatContext, ChatRole, ToolDefinition};

    #[test]
    fn think_blocks_are_removed_in_any_split() {
        let content = "  <think>I should greet.\nYes.</think>\n\nHello <b>there</b>";
        let chars: Vec<char> = content.chars().collect();
        for size in 1..chars.len() {
            let mut f = ThinkFilter::default();
            let mut out = String::new();
            for piece in chars.chunks(size) {
                out.push_str(&f.push(&piece.iter().collect::<String>()));
            }
            out.push_str(&f.finish());
            assert_eq!(out, "Hello <b>there</b>", "piece size {size}");
        }
        let mut f = ThinkFilter::default();
        assert_eq!(f.push(" <thi"), "");
        assert_eq!(
            f.finish(),
            " <thi",
            "a prefix that never became a tag is kept"
        );
        let mut f = ThinkFilter::default();
        assert_eq!(f.push("Hi"), "Hi");
        assert_eq!(
            f.push("<think>"),
            "<think>",
            "only a leading block is removed"
        );
    }

    fn llm() -> Llm {
        Llm::new(LlmOptions {
            api_key: Some("sk-test".into()),
            base_url: Some("http://127.0.0.1:9/v1".into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn defaults_match_the_docs() {
        let o = LlmOptions::default();
        assert_eq!(o.model, "gpt-6-luna");
        assert_eq!(o.temperature, Some(0.8));
        assert_eq!(o.tool_choice, ToolChoice::Auto);
        let dbg = format!("{:?}", llm());
        assert!(!dbg.contains("sk-test"), "{dbg}");
    }

    #[test]
    fn body_sends_tools_only_with_tools_and_skips_temperature_for_reasoning_models() {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::User, "hi");
        let mut req = ChatRequest::new(ctx);
        let body = llm().with_model("gpt-4.1-mini").request_body(&req);
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert!((body["temperature"].as_f64().unwrap() - 0.8).abs() < 1e-6);
        assert!(body.get("tools").is_none());
        assert!(body.get("tool_choice").is_none());

        req.tools.push(ToolDefinition {
            name: "f".into(),
            description: "d".into(),
            parameters: json!({"type": "object", "properties": {}}),
        });
        req.tool_choice = Some(ToolChoice::Function("f".into()));
        req.options.parallel_tool_calls = Some(false);
        req.options.max_tokens = Some(50);
        req.options.reasoning_effort = Some(ReasoningEffort::Low);
        let body = llm().with_model("o3-mini").request_body(&req);
        assert!(body.get("temperature").is_none());
        assert_eq!(
            body["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert_eq!(body["parallel_tool_calls"], json!(false));
        assert_eq!(body["max_completion_tokens"], json!(50));
        assert_eq!(body["reasoning_effort"], json!("low"));
        assert_eq!(body["tools"][0]["function"]["strict"], json!(true));
    }

    /// Issue 15 item 4: a tool-call index near the top of its range (then fragments without an
    /// index) used to overflow and panic the stream task.
    #[test]
    fn parser_survives_extreme_tool_call_indexes() {
        let mut p = ChunkParser::default();
        let mut chunks = Vec::new();
        for data in [
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":4294967295,"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ] {
            chunks.extend(p.event(data).unwrap());
        }
        let calls: Vec<_> = chunks
            .iter()
            .flat_map(|c| c.delta.iter().flat_map(|d| d.tool_calls.clone()))
            .collect();
        assert_eq!(calls.len(), 1, "{calls:?}");
        // Distinct indexes are capped.
        let mut p = ChunkParser::default();
        for i in 0..1000 {
            let data = format!(
                r#"{{"id":"c1","choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{i},"id":"c{i}","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}"#
            );
            p.event(&data).unwrap();
        }
        assert_eq!(p.calls.len(), MAX_TOOL_CALLS);
    }

    #[test]
    fn parser_stitches_interleaved_tool_calls() {
        let mut p = ChunkParser::default();
        let mut chunks = Vec::new();
        for data in [
            r#"{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"time","arguments":"{\"tz\""}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":\"UTC\"}"}},{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            "[DONE]",
        ] {
            chunks.extend(p.event(data).unwrap());
        }
        assert!(p.done);
        let calls: Vec<_> = chunks
            .iter()
            .flat_map(|c| c.delta.iter().flat_map(|d| d.tool_calls.clone()))
            .collect();
        assert_eq!(
            calls,
            vec![
                FunctionToolCall {
                    call_id: "call_a".into(),
                    name: "weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into()
                },
                FunctionToolCall {
                    call_id: "call_b".into(),
                    name: "time".into(),
                    arguments: r#"{"tz":"UTC"}"#.into()
                },
            ]
        );
        assert_eq!(
            chunks.last().unwrap().usage,
            Some(CompletionUsage {
                completion_tokens: 5,
                prompt_tokens: 10,
                prompt_cached_tokens: 4,
                total_tokens: 15
            })
        );
    }

    #[test]
    fn parser_rejects_malformed_json() {
        let mut p = ChunkParser::default();
        assert!(matches!(
            p.event("{not json"),
            Err(ApiError::Protocol { .. })
        ));
        assert!(p
            .event(r#"{"error":{"message":"overloaded"}}"#)
            .unwrap_err()
            .is_retryable());
    }

    #[test]
    fn compatible_providers_use_their_defaults() {
        let groq = Llm::with_groq(CompatibleOptions {
            api_key: Some("gsk".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(groq.opts.model, "openai/gpt-oss-120b");
        assert_eq!(groq.opts.temperature, Some(1.0));
        assert_eq!(
            groq.endpoint.url("chat/completions", false).as_str(),
            "https://api.groq.com/openai/v1/chat/completions"
        );
        let telnyx = Llm::with_telnyx(CompatibleOptions {
            api_key: Some("k".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(telnyx.opts.temperature, Some(0.1));
        let router = Llm::with_openrouter(OpenRouterOptions {
            base: CompatibleOptions {
                api_key: Some("or-key".into()),
                ..Default::default()
            },
            site_url: Some("https://example.com".into()),
            app_name: Some("Demo".into()),
            fallback_models: vec!["openai/gpt-4o-mini".into()],
            provider: Some(json!({"sort": "latency"})),
            web_search: Some(OpenRouterWebPlugin {
                max_results: Some(3),
                search_prompt: None,
            }),
        })
        .unwrap();
        let body = router.request_body(&ChatRequest::default());
        assert_eq!(body["model"], "openrouter/auto");
        assert_eq!(
            body["models"],
            json!(["openrouter/auto", "openai/gpt-4o-mini"]),
            "the primary model leads the fallback list"
        );
        assert_eq!(body["provider"], json!({"sort": "latency"}));
        assert_eq!(body["plugins"], json!([{"id": "web", "max_results": 3}]));
        let headers = router.endpoint.headers().unwrap();
        assert!(headers
            .iter()
            .any(|(n, v)| n.as_str() == "x-title" && v == "Demo"));
        assert!(headers
            .iter()
            .any(|(n, v)| n.as_str() == "http-referer" && v == "https://example.com"));
        let ollama = Llm::with_ollama(CompatibleOptions::default()).unwrap();
        assert_eq!(ollama.endpoint.auth, Auth::None);
        assert_eq!(ollama.opts.model, "llama3.1");
        let azure = Llm::with_azure(AzureOptions {
            azure_endpoint: Some("https://res.openai.azure.com".into()),
            azure_deployment: Some("dep".into()),
            api_key: Some("az-key".into()),
            api_version: Some("2024-10-01-preview".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            azure.endpoint.url("chat/completions", false).as_str(),
            "https://res.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-10-01-preview"
        );
        assert!(!format!("{azure:?}").contains("az-key"));
    }

    /// Every provider's default model is one the provider serves today (the list kept next to
    /// `docs/providers.md`, which the fake servers enforce).
    #[test]
    fn default_models_are_in_the_documented_lists() {
        use livekit_plugin_test_support::models::accepts;
        assert!(accepts("openai", "chat", DEFAULT_LLM_MODEL));
        assert!(accepts("openai", "transcription", crate::DEFAULT_STT_MODEL));
        assert!(accepts("openai", "speech", crate::DEFAULT_TTS_MODEL));
        assert!(accepts("openai", "speech_voices", crate::DEFAULT_TTS_VOICE));
        assert!(accepts(
            "openai",
            "realtime",
            crate::realtime::DEFAULT_REALTIME_MODEL
        ));
        assert!(accepts(
            "openai",
            "transcription",
            crate::realtime::DEFAULT_INPUT_TRANSCRIPTION_MODEL
        ));
        for p in [
            &CEREBRAS,
            &DEEPSEEK,
            &FIREWORKS,
            &GROQ,
            &OLLAMA,
            &OPENROUTER,
            &PERPLEXITY,
            &TELNYX,
            &TOGETHER,
            &XAI,
        ] {
            assert!(
                accepts(p.name, "chat", p.model),
                "{} default {} is not in crates/plugin-test-support/provider-models.json",
                p.display,
                p.model
            );
        }
    }

    #[test]
    fn gpt_6_models_default_to_no_reasoning_and_no_temperature() {
        let mut ctx = ChatContext::new();
        ctx.add_message(ChatRole::User, "hi");
        let req = ChatRequest::new(ctx);
        let body = llm().request_body(&req);
        assert_eq!(body["model"], "gpt-6-luna");
        assert_eq!(body["reasoning_effort"], json!("none"));
        assert!(body.get("temperature").is_none(), "{body}");
        let body = llm().with_model("gpt-5.6-luna").request_body(&req);
        assert_eq!(body["reasoning_effort"], json!("none"));
        let body = llm().with_model("gpt-5").request_body(&req);
        assert!(
            body.get("reasoning_effort").is_none(),
            "gpt-5 rejects `none`"
        );
        let body = llm().with_model("gpt-4.1-mini").request_body(&req);
        assert!(body.get("reasoning_effort").is_none());
        assert!((body["temperature"].as_f64().unwrap() - 0.8).abs() < 1e-6);
        let xai = Llm::with_x_ai(CompatibleOptions {
            api_key: Some("k".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(xai.request_body(&req)["reasoning_effort"], json!("none"));
    }

    #[test]
    fn openrouter_fallbacks_do_not_repeat_the_primary() {
        let router = Llm::with_openrouter(OpenRouterOptions {
            base: CompatibleOptions {
                api_key: Some("k".into()),
                model: Some("openai/gpt-6-luna".into()),
                ..Default::default()
            },
            fallback_models: vec!["openai/gpt-6-luna".into(), "openai/gpt-4o-mini".into()],
            ..Default::default()
        })
        .unwrap();
        let body = router.request_body(&ChatRequest::default());
        assert_eq!(body["model"], "openai/gpt-6-luna");
        assert_eq!(
            body["models"],
            json!(["openai/gpt-6-luna", "openai/gpt-4o-mini"])
        );
    }
}
