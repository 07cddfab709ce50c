"""Configuration: a TOML file, then GATEWAY__SECTION__KEY environment variables, then CLI flags.

Unknown keys are rejected with the key named. Nothing here reads the environment
or the disk until load_config() is called.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "GATEWAY__"


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    """TLS for the gRPC and HTTP ports (docs/security.md); empty cert_file = plaintext."""

    cert_file: str = Field("", description="PEM server certificate (chain); empty = no TLS")
    key_file: str = Field("", description="PEM private key of cert_file")
    client_ca_file: str = Field("", description="PEM CA that client certificates must chain to (mutual TLS)")
    require_client_cert: bool = Field(
        False, description="refuse connections without a client certificate signed by client_ca_file"
    )


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8088, ge=0, le=65535)
    max_request_bytes: int = Field(1 << 20, gt=0, description="larger requests get RESOURCE_EXHAUSTED")
    max_batch_items: int = Field(64, gt=0, description="most requests one GenerateBatch may carry")
    default_max_tokens: int = Field(256, gt=0, description="used when a request sets max_tokens=0")
    drain_timeout_s: float = Field(30.0, ge=0, description="SIGTERM waits this long for in-flight calls")
    max_concurrent_rpcs: int = Field(
        4096,
        ge=0,
        description="backstop on gRPC calls held at once, past [admission]'s per-tier limits (0 = no backstop)",
    )
    max_concurrent_streams: int = Field(
        0,
        ge=0,
        description="HTTP/2 streams one client connection may have open; more are refused, UNAVAILABLE (0 = no limit)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_prompts: bool = Field(False, description="include prompt text in DEBUG logs")
    allow_insecure: bool = Field(False, description="allow plaintext (no [server.tls]) on a non-loopback address")
    probe_host: str = Field("", description="serve /healthz and /metrics here only; empty = on the HTTP port")
    probe_port: int = Field(8089, ge=0, le=65535, description="port of probe_host")
    tls: TlsConfig = TlsConfig()


class TransformersConfig(_Strict):
    model_dir: str = Field("", description="HF model folder; empty = the embedded SmolLM2-135M-Instruct")
    threads: int = Field(1, gt=0, description="torch threads; 1 is fastest on small shared CPUs")
    max_batch: int = Field(8, gt=0, description="most requests decoded together in one micro-batch")
    max_wait_ms: float = Field(5.0, ge=0, description="how long a micro-batch waits to fill up")
    max_in_flight: int = Field(64, gt=0, description="requests accepted before capacity says no")
    top_logprobs: int = Field(5, ge=0, le=20)
    label_fast_path: bool = Field(
        True, description="greedy label tasks: cached prompt prefix, label checked in one pass (same answers)"
    )
    prefix_cache: int = Field(32, ge=0, description="prompt-prefix key/value caches kept for label tasks")
    prefill_threads: int = Field(
        2, ge=0, description="torch threads for a label batch's prefill (both cores of a small box); 0 = threads"
    )
    quantize_int8: bool = Field(
        False, description="int8 linear layers: faster prefill, but changes labels; re-measure the cards first"
    )


class EchoConfig(_Strict):
    """An instant backend that echoes the last message: for benchmarks and tests."""

    delay_ms: float = Field(0.0, ge=0)
    max_in_flight: int = Field(100_000, gt=0)
    tail_share: float = Field(0.0, ge=0, le=1, description="share of plain answers slowed by an extra delay")
    tail_ms: float = Field(0.0, ge=0, description="mean of that extra delay (exponentially distributed)")
    report_delay: bool = Field(
        True, description="load() gives delay_ms as the finish estimate; false: no estimate (deadlines pass mid-work)"
    )


class VllmConfig(_Strict):
    """A vLLM server reached over its OpenAI-compatible HTTP API (docs/local_backends.md)."""

    base_url: str = Field("http://127.0.0.1:8000", description="scheme://host:port of the vLLM server (no /v1)")
    served_model_name: str = Field("smollm2-135m-instruct", description="vLLM's --served-model-name for the base")
    api_key_env: str = Field("", description="environment variable holding vLLM's --api-key; empty = none")
    timeout_s: float = Field(60.0, gt=0, description="longest a request may take when it has no deadline")
    connect_timeout_s: float = Field(3.0, gt=0)
    max_in_flight: int = Field(64, gt=0, description="requests accepted before capacity says no")
    top_logprobs: int = Field(5, ge=0, le=20, description="alternatives per token for free-text confidence")
    label_top_logprobs: int = Field(20, ge=0, le=20, description="alternatives asked for on label tasks")
    metrics_poll_s: float = Field(0.1, gt=0, description="seconds between reads of /health and /metrics")
    metrics_stale_s: float = Field(
        0.3,
        gt=0,
        description="a reading older than this (and 3 polls) is unknown: only the gateway's own count is used",
    )
    max_waiting: int = Field(5, gt=0, description="num_requests_waiting at which vLLM is saturated: only URGENT goes")
    kv_cache_full: float = Field(0.8, gt=0, le=1, description="kv_cache_usage_perc at which it is saturated, likewise")
    # -- launching vLLM (make serve-vllm, or supervise = true) --------------------------------
    supervise: bool = Field(False, description="start vLLM from the gateway and restart it if it dies")
    python: str = Field("", description="interpreter with vllm installed; empty = $VLLM_PYTHON, .venv-vllm, this one")
    model_dir: str = Field("", description="HF folder vLLM serves; empty = the embedded SmolLM2-135M-Instruct")
    dtype: str = Field("bfloat16", description="--dtype; bfloat16 on CPU, auto on GPUs")
    max_model_len: int = Field(2048, gt=0, description="--max-model-len, also the context length the router checks")
    max_num_seqs: int = Field(0, ge=0, description="--max-num-seqs; 0 = vLLM's default")
    max_loras: int = Field(2, gt=0, description="--max-loras: adapters active in one batch")
    max_lora_rank: int = Field(8, gt=0, description="--max-lora-rank: the largest adapter rank served")
    max_logprobs: int = Field(20, ge=0, description="--max-logprobs")
    cpu_kvcache_gib: int = Field(1, gt=0, description="VLLM_CPU_KVCACHE_SPACE on the CPU build")
    extra_args: tuple[str, ...] = Field((), description="more vLLM command-line arguments, verbatim")
    startup_timeout_s: float = Field(300.0, gt=0, description="how long a supervised start may take")
    restart_backoff_s: float = Field(5.0, ge=0, description="first wait before restarting a dead server (doubles)")


class OllamaConfig(_Strict):
    """An Ollama server reached through the official `ollama` client (docs/local_backends.md)."""

    host: str = Field("http://127.0.0.1:11434", description="Ollama's address")
    model: str = Field("smollm2:135m", description="the base model's name in Ollama")
    keep_alive: str = Field("5m", description="how long Ollama keeps the model loaded after a request (-1 = always)")
    timeout_s: float = Field(60.0, gt=0, description="longest a request may take when it has no deadline")
    max_in_flight: int = Field(4, gt=0, description="requests accepted before capacity says no")
    parallel: int = Field(1, gt=0, description="OLLAMA_NUM_PARALLEL of the server: requests it decodes at once")
    top_logprobs: int = Field(5, ge=0, le=20)
    label_top_logprobs: int = Field(20, ge=0, le=20)
    require_logprobs: bool = Field(False, description="true: an answer without logprobs is an error (escalates)")
    context_length: int = Field(2048, gt=0, description="num_ctx sent with each request")
    ps_poll_s: float = Field(5.0, gt=0, description="how often /api/ps is read, off the request path")


class LlamaCppConfig(_Strict):
    """llama.cpp in the gateway's process, through the prebuilt xllamacpp wheel (docs/local_backends.md)."""

    model_path: str = Field("", description="GGUF model file; empty = the embedded SmolLM2-135M-Instruct (Q4_1)")
    slots: int = Field(8, gt=0, description="requests decoded together (llama.cpp's --parallel)")
    context_length: int = Field(2048, gt=0, description="tokens per slot: prompt + max_tokens")
    threads: int = Field(1, gt=0, description="llama.cpp threads for decoding; 1 is fastest on small shared CPUs")
    batch_threads: int = Field(1, gt=0, description="llama.cpp threads for prompt processing")
    max_in_flight: int = Field(64, gt=0, description="requests accepted before capacity says no")
    top_logprobs: int = Field(5, ge=0, le=20, description="alternatives per token for free-text confidence")
    label_top_logprobs: int = Field(
        40, ge=1, le=200, description="alternatives asked for on label tasks, so each label's first token is among them"
    )
    max_adapters: int = Field(8, gt=0, description="LoRA adapters one engine holds (least recently used dropped first)")


class LocalConfig(_Strict):
    backend: Literal["transformers", "echo", "vllm", "ollama", "llamacpp"] = "transformers"
    transformers: TransformersConfig = TransformersConfig()
    echo: EchoConfig = EchoConfig()
    vllm: VllmConfig = VllmConfig()
    ollama: OllamaConfig = OllamaConfig()
    llamacpp: LlamaCppConfig = LlamaCppConfig()


class AdaptersConfig(_Strict):
    """LoRA adapters served by task: folders with a card.json, as `make finetune` exports them."""

    dir: str = Field("artifacts/adapters", description="<dir>/<name>/<version>/card.json; a missing folder = none")
    watch_s: float = Field(2.0, ge=0, description="rescan interval for new versions; 0 = read once at start")
    check_base: bool = Field(True, description="refuse adapters trained on another base model (content hash)")


class TaskConfig(_Strict):
    """A task without an adapter: a label set (for label confidence) and a threshold."""

    labels: tuple[str, ...] = ()
    min_confidence: float | None = Field(None, ge=0, le=1)
    system_prompt: str = ""
    learn: bool = Field(
        False, description="keep escalated requests and the remote answers as training rows (see [learning])"
    )
    semantic_cache: bool = Field(
        False, description="look this task's requests up in the semantic cache too (needs [cache.semantic] enabled)"
    )
    compact_prompt: bool = Field(
        False, description="compact the new turn losslessly before it goes to a paid provider (never a cached prefix)"
    )


class RuleConfig(_Strict):
    """A routing rule; the first rule whose match_* fields all hold wins."""

    match_task: str | None = None
    match_tag: dict[str, str] = Field(default_factory=dict, description="every tag must equal")
    match_tools: bool | None = Field(
        None,
        description="true: requests that use tools (tools offered, or tool calls in the conversation); false: the rest",
    )
    prefer: tuple[str, ...] = Field((), description="providers tried first, in order")
    escalate: bool = Field(False, description="skip the local tier (escalation reason: rule)")
    local_only: bool = Field(False, description="never leave the box for matching requests")


class AdmissionConfig(_Strict):
    """Each tier's adaptive concurrency limit, its queue and the classes' shares (docs/operations.md, Overload)."""

    urgent_share: float = Field(0.2, ge=0, lt=1, description="share of each tier's limit kept free for URGENT")
    bulk_share: float = Field(0.5, gt=0, le=1, description="the most of each tier's limit BULK requests may use")
    queue_factor: float = Field(1.0, ge=0, description="requests waiting for a provider, per unit of its limit")
    min_queue: int = Field(8, ge=0, description="the least a provider's queue holds")
    local_initial: int = Field(
        0, ge=0, description="the local tier's limit before any answer was timed; 0 = the backend's max_in_flight"
    )
    local_max: int = Field(1000, gt=0, description="the most the local tier's limit grows to")
    provider_initial: int = Field(200, gt=0, description="each provider's limit before any answer was timed")
    provider_max: int = Field(4000, gt=0, description="the most a provider's limit grows to")
    door_initial: int = Field(
        64, ge=0, description="calls the gateway itself works on at once, before any was timed (0 = no such limit)"
    )
    door_max: int = Field(1024, gt=0, description="the most that limit grows to")
    tolerance: float = Field(1.5, ge=1, description="answers this many times slower than usual still grow the limit")
    key_classes: dict[str, Literal["urgent", "normal", "bulk"]] = Field(
        default_factory=dict, description="API key (or certificate) name -> the class all its requests get"
    )

    @model_validator(mode="after")
    def _initial_within_max(self) -> AdmissionConfig:
        for tier in ("local", "provider", "door"):
            initial, most = getattr(self, f"{tier}_initial"), getattr(self, f"{tier}_max")
            if initial and initial > most:
                raise ValueError(f"admission.{tier}_initial ({initial}) must not exceed admission.{tier}_max ({most})")
        return self


class RoutingConfig(_Strict):
    escalation_order: tuple[str, ...] = ("anthropic", "openai", "google", "xai", "huggingface")
    default_min_confidence: float = Field(0.6, ge=0, le=1)
    confidence_quantile: float = Field(0.1, ge=0, le=1, description="free-text confidence quantile")
    urgent: Literal["fastest", "local"] = "fastest"
    hedge: bool = Field(
        True, description="URGENT requests that may leave the box: race the fastest provider against a slow local tier"
    )
    hedge_after_ms: float | None = Field(
        None, ge=0, description="start the provider when the local tier has not answered by then; unset = its p95"
    )
    hedge_min_ms: float = Field(20.0, ge=0, description="the least delay taken from the p95 (a fast tier is not raced)")
    rules: tuple[RuleConfig, ...] = ()
    breaker_failures: int = Field(5, gt=0, description="provider failures within the window that open its breaker")
    breaker_window_s: float = Field(60.0, gt=0, description="how far back failures count")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="open breaker waits this long before one probe")
    stream_continue: bool = Field(
        True, description="a provider stream that breaks after its first piece is continued by the next provider"
    )
    stream_chunk_timeout_s: float | None = Field(
        None, gt=0, description="a provider stream silent this long has stalled (fails over); unset = its timeout_s"
    )


class ProviderConfig(_Strict):
    """A commercial provider reached through its official SDK."""

    enabled: bool = True
    model: str = ""
    base_url: str = ""
    api_key_env: str = ""
    daily_token_budget: int = Field(0, ge=0, description="prompt + completion tokens per UTC day")
    requests_per_minute: int = Field(0, ge=0, description="0 = unlimited")
    timeout_s: float = Field(20.0, gt=0)
    max_retries: int = Field(2, ge=0)
    price_in_per_mtok: float = Field(0.0, ge=0)
    price_out_per_mtok: float = Field(0.0, ge=0)
    kind: str = Field("", description="wire format: openai|anthropic|google|xai|huggingface; empty = the table name")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="alternatives per token; None = provider default")
    prompt_cache: bool = Field(
        False, description="Anthropic: mark a long system prompt (a task's template) with cache_control"
    )
    prompt_cache_min_chars: int = Field(
        4000, ge=0, description="the shortest system prompt marked for caching (Anthropic caches >= 1024-4096 tokens)"
    )
    cached_in_ratio: float | None = Field(
        None, ge=0, description="price of a prompt-cache read relative to price_in; None = the kind's default"
    )
    cache_write_ratio: float | None = Field(
        None, ge=0, description="price of a prompt-cache write relative to price_in; None = the kind's default"
    )
    budget_cached_weight: float = Field(
        1.0, ge=0, le=1, description="what one prompt-cache read counts against daily_token_budget (1 = a full token)"
    )


class ModelsConfig(_Strict):
    """Model names clients already send, so an app switches to the gateway by its base URL alone."""

    aliases: dict[str, str] = Field(
        default_factory=dict,
        description='name -> "" (route: local first), a local model or adapter, or "provider/model" (a pin)',
    )


class BudgetConfig(_Strict):
    """Where the per-provider daily token ledger lives and how requests are estimated before a call."""

    path: str = Field("", description="SQLite file; empty = <state_dir>/ledger.sqlite3")
    chars_per_token: float = Field(3.0, gt=0, description="prompt estimate: characters per token (conservative)")
    reservation_expiry_s: float = Field(
        900.0, gt=0, description="a reservation still open this long is settled at its estimate; > any call's length"
    )


class StateConfig(_Strict):
    """Where shared state lives: the token ledger, response cache, usage records, breaker and rate-limit state."""

    backend: Literal["sqlite", "redis"] = Field(
        "sqlite", description="sqlite: files under state_dir (one box); redis: shared by every replica"
    )
    url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL when backend = 'redis'")
    key_prefix: str = Field("gw:", description="prefix of every Redis key, to keep deployments apart")


class SemanticCacheConfig(_Strict):
    """Paraphrases answered from the cache (docs/semantic_cache.md): opt-in per task and per request."""

    enabled: bool = Field(False, description="load the embedding model and index answers by their prompt's meaning")
    threshold: float = Field(
        0.9, gt=0, le=1, description="least cosine similarity of a hit; the guard still refuses changed facts"
    )
    max_entries: int = Field(100_000, gt=0, description="prompts indexed per replica; the oldest go first")
    candidates: int = Field(4, gt=0, le=64, description="nearest entries checked by the guard on each lookup")


class CacheConfig(_Strict):
    """The exact-match response cache, and the semantic cache over it."""

    enabled: bool = True
    ttl_s: float = Field(3600.0, gt=0, description="how long an answer stays cached")
    max_entries: int = Field(100_000, gt=0, description="size bound of the shared cache; oldest entries go first")
    memory_entries: int = Field(4096, ge=0, description="in-process front tier per replica; 0 = off")
    cache_sampled: bool = Field(False, description="also cache requests with temperature > 0")
    shared_across_keys: bool = Field(
        False,
        description="one cache for every caller: a hit then tells one API key that another asked the same "
        "prompt within ttl_s (docs/security.md); false = entries per API key or certificate subject",
    )
    path: str = Field("", description="SQLite file; empty = <state_dir>/response_cache.sqlite3")
    semantic: SemanticCacheConfig = SemanticCacheConfig()


class EmbeddingsConfig(_Strict):
    """The local embedding model: POST /v1/embeddings, and the semantic cache's keys."""

    enabled: bool = Field(False, description="serve POST /v1/embeddings on the OpenAI door")
    model_dir: str = Field("", description="sentence-transformers folder; empty = all-MiniLM-L6-v2 from its wheel")
    threads: int = Field(1, gt=0, description="torch threads of the embedding model")
    max_batch: int = Field(64, gt=0, description="most texts embedded in one forward pass")


class PriceConfig(_Strict):
    in_per_mtok: float = Field(0.0, ge=0, description="dollars per million prompt tokens")
    out_per_mtok: float = Field(0.0, ge=0, description="dollars per million completion tokens")


class UsageConfig(_Strict):
    """Usage records (one per answered request) and what they are priced against."""

    retention_days: int = Field(30, gt=0, description="records older than this are deleted")
    path: str = Field("", description="SQLite file; empty = <state_dir>/usage.sqlite3")
    reference_provider: str = Field(
        "", description="'$ saved' compares every answer with this provider's prices; empty = none"
    )
    prices: dict[str, PriceConfig] = Field(
        default_factory=dict, description="prices by provider name; default: the provider's price_*_per_mtok"
    )
    record_prompts: bool = Field(False, description="keep the last user message in records and show it")


class LearningConfig(_Strict):
    """Training rows captured from the escalated requests of tasks with `learn = true` (docs/operations.md)."""

    enabled: bool = Field(True, description="false: capture nothing, whatever the tasks say")
    path: str = Field("", description="SQLite file; empty = <state_dir>/training.sqlite3 (owner-only)")
    max_rows: int = Field(50_000, gt=0, description="per task; the oldest rows go first")
    max_age_days: float = Field(90.0, gt=0, description="rows older than this are deleted")
    audit_rate: float = Field(
        0.0, ge=0, le=1, description="share of confident local answers of learning tasks also asked of the remote tier"
    )
    audit_budget_share: float = Field(
        0.1, ge=0, le=1, description="most of each provider's daily token budget the audit may spend"
    )
    target_accuracy: float = Field(0.95, gt=0, le=1, description="what answers kept locally must reach")
    on_low_accuracy: Literal["raise", "alarm"] = Field(
        "raise", description="live accuracy below target: raise the task's threshold, or only log an alarm"
    )
    min_audits: int = Field(30, gt=0, description="audits at the current threshold before the estimate is acted on")
    audit_window_days: float = Field(7.0, gt=0, description="audits older than this do not count")
    threshold_step: float = Field(0.02, gt=0, le=1, description="how far one raise moves the threshold")
    max_threshold: float = Field(0.99, gt=0, le=1, description="the raise never goes past this")


class KeysConfig(_Strict):
    """API keys (`python -m gateway keys`); none = authentication off (docs/security.md)."""

    path: str = Field("", description="SQLite file; empty = <state_dir>/keys.sqlite3 (owner-only)")
    refresh_s: float = Field(
        2.0, gt=0, description="how often each replica re-reads the keys: the delay before a revoke counts"
    )


class DashboardConfig(_Strict):
    enabled: bool = Field(True, description="serve the dashboard at / and /api/usage on the HTTP port")
    refresh_s: float = Field(2.0, gt=0, description="how often the page polls /api/usage")
    recent: int = Field(50, ge=0, le=1000, description="recent requests listed")


class TracingConfig(_Strict):
    """OpenTelemetry traces of each request, sent over OTLP (docs/operations.md). Off by default."""

    enabled: bool = Field(False, description="true: one trace per request (needs the `tracing` extra)")
    endpoint: str = Field(
        "",
        description="OTLP collector URL; empty = the exporter's default "
        "(grpc: http://localhost:4317, http: http://localhost:4318/v1/traces)",
    )
    protocol: Literal["grpc", "http"] = Field("grpc", description="OTLP over gRPC, or over HTTP (protobuf)")
    service_name: str = Field("trading-gateway", min_length=1, description="service.name of every span")
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="share of new traces kept; a caller's traceparent decides for its own trace"
    )
    headers_env: str = Field(
        "", description="environment variable holding exporter headers as 'key=value,key2=value2'; empty = none"
    )
    timeout_s: float = Field(10.0, gt=0, description="longest one export may take")


class Config(_Strict):
    offline: bool = Field(False, description="true: never call any remote provider")
    cache_dir: str = Field("", description="model cache; empty = $XDG_CACHE_HOME/trading-gateway")
    state_dir: str = Field(
        "", description="ledger, response cache, usage, limits; empty = $XDG_STATE_HOME/trading-gateway"
    )
    server: ServerConfig = ServerConfig()
    local: LocalConfig = LocalConfig()
    routing: RoutingConfig = RoutingConfig()
    admission: AdmissionConfig = AdmissionConfig()
    tasks: dict[str, TaskConfig] = Field(default_factory=dict)
    adapters: AdaptersConfig = AdaptersConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: ModelsConfig = ModelsConfig()
    budget: BudgetConfig = BudgetConfig()
    state: StateConfig = StateConfig()
    cache: CacheConfig = CacheConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    usage: UsageConfig = UsageConfig()
    learning: LearningConfig = LearningConfig()
    dashboard: DashboardConfig = DashboardConfig()
    keys: KeysConfig = KeysConfig()
    tracing: TracingConfig = TracingConfig()

    @model_validator(mode="after")
    def _aliases_name_what_is_served(self) -> Config:
        """An alias is a non-empty name whose target is no alias itself and, for a pin, names an enabled
        provider (local names are checked per request: adapters come and go)."""
        enabled = sorted(name for name, p in self.providers.items() if p.enabled)
        for name, target in self.models.aliases.items():
            where = f"models.aliases.{name}"
            if not name.strip():
                raise ValueError("models.aliases: an alias name must not be empty")
            if target in self.models.aliases:
                raise ValueError(f"{where}: '{target}' is an alias itself; name its target directly")
            provider, slash, model = target.partition("/")
            if slash and (provider not in enabled or not model):
                raise ValueError(
                    f"{where}: '{target}' must be provider/model with an enabled provider "
                    f'({", ".join(enabled) or "none is configured"}), a local model name, or "" for local first'
                )
        return self


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config from a TOML file, environment variables and flag overrides (dotted keys)."""
    data: dict[str, Any] = {} if path is None else _read_toml(path)
    source = "defaults" if path is None else str(path)
    env = env or {}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            _set_dotted(data, key[len(ENV_PREFIX) :].lower().replace("__", "."), _parse_env_value(value))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)
    for key, variable, fallback in (
        ("cache_dir", "XDG_CACHE_HOME", ".cache"),
        ("state_dir", "XDG_STATE_HOME", ".local/state"),
    ):
        data[key] = data.get(key) or str(_default_dir(env, variable, fallback))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist; pass --config with a readable TOML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}); pass a readable file") from exc


def _default_dir(env: Mapping[str, str], xdg_variable: str, fallback: str) -> Path:
    """Models are a cache (safe to delete); budgets and usage are state (deleting them resets spend)."""
    base = env.get(xdg_variable) or str(Path(env.get("HOME", str(Path.home()))) / fallback)
    return Path(base) / "trading-gateway"


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a table")
    node[leaf] = value


def _parse_env_value(raw: str) -> Any:
    """Environment values are JSON when they parse as JSON (numbers, booleans, lists), else strings."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if not err["loc"]:  # a check across keys, whose message names them
            lines.append(str(err["msg"]).removeprefix("Value error, "))
        elif err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'; remove it or check its spelling")
        else:
            lines.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
    return f"invalid configuration ({source}): " + "; ".join(lines)
