"""build_remote_tier: from config and environment, one log line per provider, keys never logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.app.remote import build_remote_tier
from gateway.config import Config
from gateway.remote.types import RemoteUnavailable
from gateway.state.budget.memory import MemoryLedger
from gateway.state.open import ledger_path
from tests.fakes.providers import KINDS, TEST_KEYS, provider_config, running
from tests.unit.test_remote_tier import CALL


def five_provider_config(urls: dict[str, str] | None = None, **top: object) -> Config:
    budgets = {"openai": 15000, "anthropic": 20000, "google": 15000, "xai": 10000, "huggingface": 30000}
    providers = {
        name: {"daily_token_budget": budget, "base_url": (urls or {}).get(name, ""), "max_retries": 0}
        for name, budget in budgets.items()
    }
    return Config.model_validate({"providers": providers, **top})


async def test_every_provider_is_built_in_escalation_order_with_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.app.remote")
    ledger = MemoryLedger()
    tier = build_remote_tier(five_provider_config(), TEST_KEYS, ledger)
    assert tier is not None
    try:
        assert tier.providers() == ("anthropic", "openai", "google", "xai", "huggingface")
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 5
        assert all("enabled" in line for line in lines)
        assert any("provider openai: enabled, model gpt-4o-mini at https://api.openai.com/v1" in line for line in lines)
        assert all(key not in caplog.text for key in TEST_KEYS.values())
    finally:
        await tier.aclose()


async def test_a_provider_without_its_key_is_disabled_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.app.remote")
    env = {k: v for k, v in TEST_KEYS.items() if k != "XAI_API_KEY"}
    tier = build_remote_tier(five_provider_config(), env, MemoryLedger())
    assert tier is not None
    try:
        assert "xai" not in tier.providers()
        assert "provider xai: disabled, no API key; set XAI_API_KEY" in caplog.text
        assert "xai" in {row.provider for row in await tier.usage_today()}
        with pytest.raises(RemoteUnavailable, match="xai: no API key; set XAI_API_KEY"):
            await tier.complete(CALL, order=("xai",), deadline=None)
    finally:
        await tier.aclose()


async def test_unknown_kind_and_missing_keys_never_crash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.app.remote")
    config = Config.model_validate({"providers": {"mistral": {"api_key_env": "MISTRAL_KEY"}, "openai": {}}})
    tier = build_remote_tier(config, {"MISTRAL_KEY": "m-secret"}, MemoryLedger())
    assert tier is not None
    assert tier.providers() == ()
    assert "unknown provider kind 'mistral'" in caplog.text
    assert "provider openai: disabled, no API key; set OPENAI_API_KEY" in caplog.text
    assert "m-secret" not in caplog.text


async def test_a_google_key_may_come_from_either_variable() -> None:
    config = Config.model_validate({"providers": {"google": {}}})
    tier = build_remote_tier(config, {"GOOGLE_API_KEY": "g-key"}, MemoryLedger())
    assert tier is not None
    try:
        assert tier.providers() == ("google",)
    finally:
        await tier.aclose()


def test_offline_or_nothing_configured_builds_no_tier(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.app.remote")
    assert build_remote_tier(five_provider_config(offline=True), TEST_KEYS, MemoryLedger()) is None
    assert "offline = true" in caplog.text
    assert build_remote_tier(Config(), TEST_KEYS, MemoryLedger()) is None


async def test_offline_sends_nothing_even_with_keys_and_stand_ins() -> None:
    async with running(*KINDS) as fakes:
        urls = {name: str(provider_config(name, fake).base_url) for name, fake in fakes.items()}
        assert build_remote_tier(five_provider_config(urls, offline=True), TEST_KEYS, MemoryLedger()) is None
        assert all(fake.requests == 0 for fake in fakes.values())


async def test_built_tier_answers_through_the_stand_ins_and_honours_base_url() -> None:
    async with running(*KINDS) as fakes:
        urls = {name: str(provider_config(name, fake).base_url) for name, fake in fakes.items()}
        tier = build_remote_tier(five_provider_config(urls), TEST_KEYS, MemoryLedger())
        assert tier is not None
        try:
            for name in KINDS:
                result = await tier.complete(CALL, order=(name,), deadline=None)
                assert result.completion.provider == name
                assert fakes[name].requests == 1
        finally:
            await tier.aclose()


def test_ledger_path_defaults_to_the_state_dir(tmp_path: Path) -> None:
    assert ledger_path(Config(state_dir=str(tmp_path))) == tmp_path / "ledger.sqlite3"
    custom = Config.model_validate({"state_dir": str(tmp_path), "budget": {"path": str(tmp_path / "x.db")}})
    assert ledger_path(custom) == tmp_path / "x.db"


async def test_a_custom_section_can_reuse_a_wire_format_with_its_own_key() -> None:
    async with running("openai") as fakes:
        config = Config.model_validate(
            {
                "providers": {
                    "groq": {
                        "kind": "openai",
                        "api_key_env": "GROQ_KEY",
                        "model": "llama-x",
                        "base_url": str(provider_config("openai", fakes["openai"]).base_url),
                    }
                }
            }
        )
        tier = build_remote_tier(config, {"GROQ_KEY": "gsk-test"}, MemoryLedger())
        assert tier is not None
        try:
            result = await tier.complete(CALL, order=("groq",), deadline=None)
            assert (result.completion.provider, result.completion.model) == ("groq", "llama-x")
            assert fakes["openai"].seen[0].headers.get("Authorization") == "Bearer gsk-test"
        finally:
            await tier.aclose()
