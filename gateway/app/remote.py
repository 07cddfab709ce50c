"""Build the remote tier from config and the environment: one log line per provider, never a crash.

A provider without its key, with an unknown kind, or whose SDK is missing is
disabled with a line saying what to change; keys never appear in logs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from gateway.config import Config, ProviderConfig
from gateway.core.clock import SYSTEM_CLOCK, Clock
from gateway.core.trace import NO_TRACER, Tracer
from gateway.remote.estimate import CharEstimator
from gateway.remote.providers.registry import PROVIDER_KINDS, build_provider, find_key, key_envs, kind_of
from gateway.remote.tier import RemoteTier
from gateway.remote.types import DisabledProvider, ProviderSlot, RemoteSettings
from gateway.state.breaker.store import ProviderBreakers
from gateway.state.budget.ledger import TokenLedger
from gateway.state.open import breaker_settings
from gateway.state.ratelimit.store import ProviderRateLimits

log = logging.getLogger(__name__)


def build_remote_tier(
    config: Config,
    env: Mapping[str, str],
    ledger: TokenLedger,
    *,
    clock: Clock = SYSTEM_CLOCK,
    breakers: ProviderBreakers | None = None,
    rate_limits: ProviderRateLimits | None = None,
    tracer: Tracer = NO_TRACER,
) -> RemoteTier | None:
    """The remote tier, or None when offline or no provider is configured and enabled.

    `breakers` / `rate_limits`: shared stores for several processes; None keeps them in this process.
    """
    if config.offline:
        log.info("remote providers: off (offline = true); nothing leaves this machine")
        return None
    slots: list[ProviderSlot] = []
    disabled: list[DisabledProvider] = []
    for name in _ordered(config):
        provider = config.providers[name]
        if not provider.enabled:
            log.info(f"provider {name}: disabled in config (enabled = false)")
            continue
        built = _build_one(name, provider, env)
        if isinstance(built, ProviderSlot):
            slots.append(built)
        else:
            disabled.append(built)
    if not slots and not disabled:
        log.info("remote providers: none configured; local only")
        return None
    settings = RemoteSettings(
        breaker=breaker_settings(config),
        continue_streams=config.routing.stream_continue,
        stream_chunk_timeout_s=config.routing.stream_chunk_timeout_s,
    )
    estimator = CharEstimator(config.budget.chars_per_token)
    return RemoteTier(
        slots,
        ledger,
        disabled=disabled,
        estimator=estimator,
        settings=settings,
        breakers=breakers,
        rate_limits=rate_limits,
        clock=clock,
        tracer=tracer,
    )


def _ordered(config: Config) -> list[str]:
    """escalation_order first, then any other configured provider in file order."""
    listed = [name for name in config.routing.escalation_order if name in config.providers]
    return listed + [name for name in config.providers if name not in listed]


def _build_one(name: str, provider: ProviderConfig, env: Mapping[str, str]) -> ProviderSlot | DisabledProvider:
    budget = provider.daily_token_budget
    kind = kind_of(name, provider)
    if kind not in PROVIDER_KINDS:
        reason = f"unknown provider kind '{kind}'; set kind to one of {', '.join(PROVIDER_KINDS)}"
        log.warning(f"provider {name}: disabled, {reason}")
        return DisabledProvider(name, reason, budget)
    envs = key_envs(name, provider)
    key = find_key(env, envs)
    if key is None:
        reason = f"no API key; set {' or '.join(envs)}"
        log.warning(f"provider {name}: disabled, {reason}")
        return DisabledProvider(name, reason, budget)
    try:
        backend = build_provider(name, provider, key)
    except ImportError as exc:
        reason = f"its SDK is not installed ({exc.name or exc}); pip install {PROVIDER_KINDS[kind].extra}"
        log.warning(f"provider {name}: disabled, {reason}")
        return DisabledProvider(name, reason, budget)
    except Exception as exc:  # noqa: BLE001 - a broken provider is disabled, never a crash
        reason = f"could not be set up: {type(exc).__name__}: {str(exc).replace(key, '***')}"
        log.warning(f"provider {name}: disabled, {reason}")
        return DisabledProvider(name, reason, budget)
    limits = f"{budget} tokens/day" if budget else "no daily token budget (daily_token_budget = 0)"
    rpm = f"{provider.requests_per_minute} requests/min" if provider.requests_per_minute else "no request limit"
    log.info(
        f"provider {name}: enabled, model {backend.model} at {_redact(getattr(backend, 'base_url', ''))}, "
        f"{limits}, {rpm}, key from {_key_source(env, envs)}"
    )
    return ProviderSlot(
        backend,
        daily_token_budget=budget,
        requests_per_minute=provider.requests_per_minute,
        max_retries=provider.max_retries,
        price_in_per_mtok=provider.price_in_per_mtok,
        price_out_per_mtok=provider.price_out_per_mtok,
        budget_cached_weight=provider.budget_cached_weight,
    )


def _key_source(env: Mapping[str, str], envs: tuple[str, ...]) -> str:
    return next((var for var in envs if env.get(var, "").strip()), "?")


def _redact(url: str) -> str:
    """Drop any user:password@ from a URL before logging it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
