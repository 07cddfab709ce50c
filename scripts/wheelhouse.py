"""Download every wheel a lock pins into one folder, then prove the folder installs the lock offline.

    python scripts/wheelhouse.py --out wheelhouse                 # requirements.lock (`make wheelhouse`)
    python scripts/wheelhouse.py --out wh --lock deploy/lock/image.lock
    python scripts/wheelhouse.py --out wh --only grpcio protobuf  # a subset (the test uses one)

Each file is checked against the lock's sha256 hashes as it is downloaded (`--require-hashes`), and the
check at the end resolves the lock (or the subset) with `--no-index --find-links <out>`: what an offline
box does (docs/deploy.md). torch's CPU build comes from /opt/wheels on these machines, elsewhere from
PyTorch's CPU index (`--extra-index-url https://download.pytorch.org/whl/cpu`, passed through PIP_* env).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locklib import LOCK, Locked, normalise, read_lock


def select(entries: dict[str, Locked], only: list[str]) -> list[Locked]:
    if not only:
        return list(entries.values())
    missing = sorted({normalise(n) for n in only} - entries.keys())
    if missing:
        raise SystemExit(f"not in the lock: {', '.join(missing)}")
    return [entries[normalise(n)] for n in only]


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:5])} ... failed:\n{done.stderr.strip()[-2000:]}")


def build(out: Path, chosen: list[Locked]) -> Path:
    """Download `chosen` into `out`; returns the requirements file that describes them."""
    out.mkdir(parents=True, exist_ok=True)
    requirements = out / "requirements.lock"
    requirements.write_text("".join(entry.requirement() + "\n" for entry in chosen), encoding="utf-8")
    binary = ["--only-binary", ":all:"]
    pip("download", "-q", "--no-deps", "--require-hashes", *binary, "-d", str(out), "-r", str(requirements))
    return requirements


def check_offline(out: Path, requirements: Path) -> None:
    """Resolve every entry from `out` alone, hashes checked, as an offline install would."""
    with tempfile.TemporaryDirectory() as target:
        pip(
            "install", "-q", "--dry-run", "--ignore-installed", "--no-index", "--no-deps", "--require-hashes",
            "--find-links", str(out), "--target", target, "-r", str(requirements),
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the wheelhouse folder")
    parser.add_argument("--lock", type=Path, default=LOCK, help="the lock to carry (default: requirements.lock)")
    parser.add_argument("--only", nargs="*", default=[], help="just these packages (names as in the lock)")
    args = parser.parse_args()
    chosen = select(read_lock(args.lock), args.only)
    requirements = build(args.out, chosen)
    check_offline(args.out, requirements)
    size = sum(p.stat().st_size for p in args.out.glob("*.whl"))
    print(f"{args.out}: {len(chosen)} wheels, {size / 2**20:.0f} MiB; they install {requirements.name} with --no-index")


if __name__ == "__main__":
    main()
