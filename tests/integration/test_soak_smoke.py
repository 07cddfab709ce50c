"""scripts/soak.py for 20 seconds instead of 10 minutes: the same code path `make soak` runs, so it cannot rot.

Leak limits are loosened (20 s says nothing about growth, and load shedding on a
busy test machine may refuse a few requests); what is checked is that the
script drives all three kinds of answer, samples the gateway and reports.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.gateway_process import ROOT


def test_a_short_soak_runs_and_reports_every_figure() -> None:
    command = [sys.executable, "scripts/soak.py", "--duration", "20", "--warmup", "6", "--every", "2"]
    command += ["--rate", "30", "--rss-growth-pct", "100", "--max-failed-pct", "100", "--task-slack", "1000"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    answered = re.search(r"answered by tier (\{.*?\})", out)
    assert answered, out
    for tier in ("TIER_LOCAL", "TIER_REMOTE", "TIER_CACHE"):
        assert f"'{tier}': " in answered.group(1), out
    rss = re.search(r"^rss: ([\d.]+) MiB -> ([\d.]+) MiB", out, re.MULTILINE)
    assert rss and float(rss.group(1)) > 10, out  # a real process's resident memory was read
    fds = re.search(r"^open fds: (\d+) -> (\d+)", out, re.MULTILINE)
    assert fds and int(fds.group(1)) > 3, out
    tasks = re.search(r"^asyncio tasks: (\d+) -> (\d+)", out, re.MULTILINE)
    assert tasks and int(tasks.group(1)) > 0, out  # read from gateway_asyncio_tasks on /metrics
    assert "load average" in out and out.rstrip().endswith("soak: ok"), out
