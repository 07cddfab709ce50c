from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


def test_defaults_need_no_file_or_environment() -> None:
    config = load_config(None, {"HOME": "/home/trader"})
    assert (config.server.host, config.server.port, config.server.http_port) == ("127.0.0.1", 50051, 8088)
    assert config.server.max_request_bytes == 1 << 20
    assert config.local.backend == "transformers" and config.local.transformers.threads == 1
    assert config.cache_dir == "/home/trader/.cache/trading-gateway"
    assert config.state_dir == "/home/trader/.local/state/trading-gateway"
    assert config.providers == {} and not config.offline


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('offline = true\n[server]\nport = 6000\nhttp_port = 6001\n[tasks.trend]\nlabels = ["up", "down"]\n')
    env = {"GATEWAY__SERVER__HTTP_PORT": "7001", "GATEWAY__LOCAL__TRANSFORMERS__THREADS": "2", "HOME": "/h"}
    config = load_config(path, env, {"server.port": 7000, "server.host": None})
    assert config.offline
    assert (config.server.port, config.server.http_port) == (7000, 7001)
    assert config.local.transformers.threads == 2
    assert config.tasks["trend"].labels == ("up", "down")


def test_unknown_keys_are_rejected_with_the_key_named(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[server]\nprot = 1\n[providers.openai]\nmodle = 'x'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert "unknown key 'server.prot'" in str(err.value)
    assert "unknown key 'providers.openai.modle'" in str(err.value)


def test_bad_values_and_files_say_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'server\.port'"):
        load_config(None, {"GATEWAY__SERVER__PORT": "99999"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", {})
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, {})


def test_model_aliases_name_an_enabled_provider_or_a_local_target(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[providers.openai]\nmodel = "gpt-test"\n\n'
        '[models.aliases]\n"gpt-4o-mini" = ""\n"gpt-4o" = "openai/gpt-4o"\n"small" = "smollm2"\n'
    )
    assert load_config(path).models.aliases == {"gpt-4o-mini": "", "gpt-4o": "openai/gpt-4o", "small": "smollm2"}
    for aliases, problem in (
        ('"claude" = "anthropic/claude-3"', "'anthropic/claude-3' must be provider/model with an enabled provider"),
        ('"a" = "openai/"', "'openai/' must be provider/model"),
        ('"a" = "b"\n"b" = ""', "models.aliases.a: 'b' is an alias itself"),
        ('"" = "openai/gpt-4o"', "an alias name must not be empty"),
    ):
        path.write_text(f'[providers.openai]\nmodel = "gpt-test"\n\n[models.aliases]\n{aliases}\n')
        with pytest.raises(ConfigError, match=problem) as refused:
            load_config(path)
        assert "got {" not in str(refused.value)  # the message, not a dump of the whole config
