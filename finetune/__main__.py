"""`python -m finetune [run|data|fetch] ...` — see docs/finetune.md."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from finetune.budget import parse_duration
from finetune.data.datasets import BUILTIN_TASKS, BuildOptions, DataError
from finetune.options import DEFAULT_LEARNING_RATES, DEFAULT_TASKS, WATCHED_ROWS, RunOptions, Traffic, UserData
from finetune.settings import TrainSettings

SMOKE_CAPS = {"train": 64, "val": 32, "test": 32, "heldout": 16}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune", description="LoRA adapters from real market data")
    p.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "data", "fetch", "remeasure"),
        help="run: build, train, evaluate, publish (default); data: datasets and cards only; "
        "fetch: download the data files; remeasure: a published adapter's card measured again on --on's path",
    )
    p.add_argument(
        "--tasks",
        default=",".join(DEFAULT_TASKS),
        help=f"comma-separated, or 'all' ({', '.join(BUILTIN_TASKS)}); default %(default)s",
    )
    p.add_argument(
        "--budget",
        default=None,
        help="wall time for the whole run, e.g. 20m, 2h; 'none' = steps only (default: $FINETUNE_BUDGET or 20m)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="tasks trained side by side in separate processes (default: $FINETUNE_JOBS or 1)",
    )
    p.add_argument("--smoke", action="store_true", help="a tiny run for tests: few examples, 6 steps, no budget")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="output folder (default %(default)s)")
    p.add_argument(
        "--adapters-dir",
        type=Path,
        default=None,
        help="where adapters are published (default <artifacts>/adapters: the gateway's adapter directory)",
    )
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="model and data cache (default $XDG_CACHE_HOME/trading-gateway)"
    )
    p.add_argument("--base", default="", help="base model folder or hub id (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    g = p.add_argument_group("LoRA training")
    g.add_argument("--rank", type=int, default=8)
    g.add_argument("--alpha", type=int, default=16)
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--targets", default="all-linear", help="'all-linear' or module names, e.g. q_proj,v_proj")
    g.add_argument("--layers", default="", help="decoder layer indices to adapt, e.g. 10-29 (default all)")
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"peak learning rate for every task (default {TrainSettings().learning_rate:g}; "
        + ", ".join(f"{task} {lr:g}" for task, lr in DEFAULT_LEARNING_RATES.items())
        + ")",
    )
    g.add_argument("--warmup-steps", type=int, default=10)
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--max-steps", type=int, default=2000)
    g.add_argument("--max-seq-len", type=int, default=256)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--plateau-every",
        type=int,
        default=TrainSettings().plateau_every,
        help="steps between checks of the validation loss; a task stops once it has plateaued (0: never; "
        "default %(default)s)",
    )
    g.add_argument(
        "--plateau-patience",
        type=int,
        default=TrainSettings().plateau_patience,
        help="checks without a 1%% improvement that end a task (default %(default)s)",
    )
    g.add_argument(
        "--watched-rows",
        type=int,
        default=WATCHED_ROWS,
        help="validation rows held back from the threshold to watch for the plateau (default %(default)s)",
    )
    g.add_argument("--no-prefix-cache", action="store_true", help="run the shared prompt prefix for every row")
    g.add_argument("--no-resume", action="store_true", help="ignore checkpoints of an interrupted run")
    e = p.add_argument_group("evaluation")
    e.add_argument("--target-accuracy", type=float, default=0.95, help="local accuracy the threshold guarantees")
    e.add_argument(
        "--confidence-level",
        type=float,
        default=0.95,
        help="probability that the kept answers' accuracy is at least the target (default 0.95)",
    )
    e.add_argument("--min-kept", type=int, default=20, help="fewest validation answers a threshold may keep")
    e.add_argument(
        "--max-val",
        type=int,
        default=300,
        help="validation examples per price task (MMLU: 100); 2000 gives the guarantee its rows (longer --budget)",
    )
    e.add_argument("--max-test", type=int, default=400, help="test (later period) examples per price task (MMLU: 160)")
    e.add_argument("--max-heldout", type=int, default=150, help="held-out symbol examples (MMLU subject: 80)")
    e.add_argument("--base-max-examples", type=int, default=150, help="per split, for the base-model baseline")
    e.add_argument("--eval-batch-size", type=int, default=32)
    u = p.add_argument_group("your own data")
    u.add_argument("--data", type=Path, default=None, help="labelled JSONL file or folder (train/val/test.jsonl)")
    u.add_argument("--name", default="", help="task name for --data (default: the file's stem)")
    u.add_argument("--labels", default="", help="comma-separated label set for --data (default: labels found)")
    u.add_argument("--system", default="", help="system prompt for --data")
    f = p.add_argument_group("learning from traffic")
    f.add_argument(
        "--from-traffic",
        action="store_true",
        help="train each task on the rows the gateway captured (`python -m gateway learn export`), split by time; "
        "publish only when the new adapter beats the one served on the newest requests",
    )
    f.add_argument("--gateway-config", type=Path, default=None, help="the gateway's config file (its training store)")
    f.add_argument("--with-seed", action="store_true", help="add the task's built-in training data to the traffic")
    p.add_argument(
        "--publish-collapsed",
        action="store_true",
        help="publish an adapter even when it only learned the label prior (--smoke implies it)",
    )
    _measure_args(p)
    p.add_argument("--ollama-from", default="", help="Modelfile FROM (default: the base model folder)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _measure_args(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("measuring on the llama.cpp path (remeasure, --measure-on)")
    m.add_argument(
        "--on",
        "--measure-on",
        dest="measure_on",
        choices=("transformers", "llamacpp"),
        default=None,
        help="the inference path the cards' temperature and threshold are fitted on: a run measures on "
        "transformers unless told llamacpp (it publishes each adapter, then that adapter measured on llama.cpp "
        "as its next version); remeasure measures on llamacpp",
    )
    m.add_argument("--adapter", type=Path, default=None, help="remeasure: this adapter folder (default: the newest)")
    m.add_argument("--llamacpp-model", type=Path, default=None, help="the GGUF file (default: the shipped Q4_1 file)")


def _layers(text: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return tuple(out)


def _cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".cache")
    return Path(base) / "trading-gateway"


def options_from(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[list[str], RunOptions, float | None, int]:
    tasks = list(BUILTIN_TASKS) if args.tasks == "all" else [t for t in args.tasks.split(",") if t]
    user = None
    if args.data is not None:
        name = args.name or args.data.stem
        user = UserData(args.data, name, tuple(x for x in args.labels.split(",") if x), args.system)
        tasks = [name] if args.tasks == ",".join(DEFAULT_TASKS) else tasks
    settings = TrainSettings(
        rank=args.rank,
        alpha=args.alpha,
        dropout=args.dropout,
        targets=tuple(args.targets.split(",")),
        layers=_layers(args.layers),
        learning_rate=TrainSettings().learning_rate if args.lr is None else args.lr,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        max_seq_len=args.max_seq_len,
        seed=args.seed,
        prefix_cache=not args.no_prefix_cache,
        plateau_every=args.plateau_every,
        plateau_patience=args.plateau_patience,
    )
    caps = {"val": args.max_val, "test": args.max_test, "heldout": args.max_heldout}
    build = BuildOptions(max_examples=caps, seed=args.seed)
    budget_text = args.budget or env.get("FINETUNE_BUDGET") or "20m"
    budget = None if budget_text.lower() == "none" else parse_duration(budget_text)
    jobs = args.jobs or int(env.get("FINETUNE_JOBS", "1"))
    if args.from_traffic and args.data is not None:
        raise ValueError("--from-traffic and --data both say where the data comes from; give one")
    if jobs > 1 and int(env.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"--jobs {jobs} (or FINETUNE_JOBS) under accelerate launch: its processes share a task; use 1")
    options = RunOptions(
        artifacts=args.artifacts,
        cache_dir=args.cache_dir or _cache_dir(env),
        base_model=args.base,
        settings=settings,
        build=build,
        adapters_dir=args.adapters_dir,
        target_accuracy=args.target_accuracy,
        confidence_level=args.confidence_level,
        min_kept=args.min_kept,
        watched_rows=args.watched_rows,
        eval_batch_size=args.eval_batch_size,
        base_max_examples=args.base_max_examples,
        threads=args.threads,
        progress=not args.no_progress,
        resume=not args.no_resume,
        ollama_from=args.ollama_from,
        user_data=user,
        publish_collapsed=args.publish_collapsed,
        traffic=Traffic(args.gateway_config, args.with_seed) if args.from_traffic else None,
        learning_rates=dict(DEFAULT_LEARNING_RATES) if args.lr is None else {},  # --lr: the same for every task
    )
    if args.smoke:
        options = replace(
            options,
            settings=replace(settings, max_steps=6, batch_size=4, learning_rate=3e-3, warmup_steps=1),
            build=replace(build, max_examples=SMOKE_CAPS, mmlu_max_examples=SMOKE_CAPS, eval_stride=20),
            base_max_examples=16,
            min_kept=5,
            publish_collapsed=True,  # six steps often give one answer to everything: the run still publishes
        )
        budget = None
    return tasks, options, budget, jobs


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        tasks, options, budget, jobs = options_from(args, env)
    except ValueError as exc:
        cli.error(str(exc))  # exits 2 with the usage line
    try:
        if args.command == "remeasure" or args.measure_on == "llamacpp":
            return _measured(args, tasks, options, budget, jobs)
        return _command(args.command, tasks, options, budget, jobs)
    except DataError as exc:
        print(f"python -m finetune: {exc}", file=sys.stderr)
        return 2


def _command(command: str, tasks: list[str], options: RunOptions, budget: float | None, jobs: int) -> int:
    if command == "fetch":
        from finetune.data.sources import ALL_FILES, DataStore

        store = DataStore(options.cache_dir)
        for item in ALL_FILES:
            print(f"{item.key}: {store.path(item)}")
        return 0
    if command == "data":
        from finetune.data.datasets import write_dataset
        from finetune.task_run import load_dataset

        for task in tasks:
            dataset = load_dataset(task, options)
            folder = options.artifacts / "datasets" / task
            write_dataset(dataset, folder)
            print(f"{task}: {folder} { ({k: v['count'] for k, v in dataset.card['splits'].items()}) }")
        return 0
    from finetune.pipeline import run
    from finetune.publish.report import results_table

    outcomes = run(tasks, options, budget, jobs)
    if not outcomes:
        return 0  # a helper process under accelerate launch: the main process reports
    print(results_table([o.summary for o in outcomes]))
    for outcome in outcomes:
        where = outcome.adapter_dir or "not published"
        print(f"{outcome.summary.evaluation.task}: {where} (report {outcome.report_path})")
    return 0


def _measured(args: argparse.Namespace, tasks: list[str], options: RunOptions, budget: float | None, jobs: int) -> int:
    """remeasure, or a run whose adapters are published measured on --measure-on's path."""
    from finetune.remeasure import newest_folder, remeasure

    if args.measure_on == "transformers":
        print(
            "python -m finetune remeasure: adapters are measured on transformers as they train; --on llamacpp",
            file=sys.stderr,
        )
        return 2
    if args.command == "remeasure":
        folders = [args.adapter] if args.adapter is not None else [newest_folder(options.adapters, t) for t in tasks]
    elif args.command == "run":
        from finetune.pipeline import run

        folders = [o.adapter_dir for o in run(tasks, options, budget, jobs) if o.adapter_dir is not None]
    else:
        print(f"python -m finetune {args.command}: --measure-on is for run and remeasure", file=sys.stderr)
        return 2
    for folder in folders:
        done = remeasure(folder, options, model_path=args.llamacpp_model)
        g = done.card.guarantee
        print(
            f"{done.card.task}: {done.folder} measured on {done.card.measured_on.describe()}: "
            f"T={done.card.calibration_temperature:g}, {g.describe() if g else f'threshold {done.card.threshold}'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
