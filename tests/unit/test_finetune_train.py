"""A smoke training run end to end (loss falls, the adapter loads and serves, the card is valid),
checkpoint resume, and the pieces that make training cheap (shared-prefix forward)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from finetune.__main__ import options_from, parser  # noqa: E402
from finetune.examples import TEST, Example, PromptTemplate  # noqa: E402
from finetune.publish.export import check_vllm_folder  # noqa: E402
from finetune.publish.report import results_table  # noqa: E402
from finetune.task_run import run_task  # noqa: E402
from finetune.tokens import ChatEncoder, LabelTokenError  # noqa: E402
from finetune.train.distributed import make_accelerator  # noqa: E402
from finetune.train.lora import AnswerLoss, TrainSettings, lora_model, train  # noqa: E402
from gateway.core.confidence import score  # noqa: E402
from gateway.core.contracts import BackendCall, Message, Role  # noqa: E402
from local_models.adapters import AdapterRegistry, model_content_hash, read_card  # noqa: E402
from local_models.model_store import ensure_embedded_model  # noqa: E402


def read_gguf_lora_alpha(path: Path) -> float:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).get_field("adapter.lora.alpha")
    assert field is not None
    return float(field.contents())


CACHE = Path.home() / ".cache" / "trading-gateway"


@pytest.fixture(scope="module")
def base_dir() -> Path:
    return ensure_embedded_model(CACHE)


@pytest.fixture(scope="module")
def tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_dir)


def load_model(base_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)


TEMPLATE = PromptTemplate("Direction: up or down?")
TOY = [Example(" ".join(["1 2 3 4", "4 3 2 1"][i % 2]), ["up", "down"][i % 2]) for i in range(16)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Any:
    artifacts = tmp_path_factory.mktemp("artifacts")
    args = parser().parse_args(["--smoke", "--tasks", "trend", "--artifacts", str(artifacts), "--no-progress"])
    tasks, options, budget, _ = options_from(args, {"HOME": str(Path.home())})
    assert tasks == ["trend"] and budget is None
    return run_task("trend", options, budget, artifacts / "runs" / "smoke", make_accelerator()), options


def test_smoke_run_learns_and_publishes_a_valid_card(smoke_run: Any, base_dir: Path) -> None:
    outcome, options = smoke_run
    losses = outcome.summary.train.losses
    assert len(losses) == 6 and sum(losses[-2:]) / 2 < 0.6 * losses[0]  # the loss falls
    folder = outcome.adapter_dir
    assert folder.parent == options.adapters / "trend" and not list(folder.parent.glob(".*"))
    card = read_card(folder)
    card.check_base(model_content_hash(base_dir))
    assert card.labels == ("up", "down", "flat") and card.task == "trend"
    assert card.guarantee is not None and card.calibration_temperature > 0  # a smoke run's rows may support none
    assert card.guarantee.rows > 0 and card.guarantee.level == 0.95
    assert (0.0 <= card.threshold <= 1.0) == card.guarantee.supported
    assert card.prompt.system.startswith("20 closes") and card.prompt.user == "{input}"
    assert {"accuracy", "auroc", "ece", "ece_calibrated", "kept_share", "majority_accuracy"} <= set(card.metrics)
    assert card.training["steps"] == 6 and card.training["rank"] == 8
    assert card.data["split_check"]["problems"] == 0 and "split_plan" in card.data
    assert check_vllm_folder(folder) == []
    modelfile = (folder / "Modelfile").read_text()
    assert f"FROM {base_dir.resolve()}" in modelfile and card.prompt.system in modelfile
    assert "ADAPTER ./adapter_model.gguf" in modelfile  # llama.cpp's form of the same LoRA, beside the PEFT files
    assert read_gguf_lora_alpha(folder / "adapter_model.gguf") == card.training["alpha"]
    for name in ("report.md", "reliability.png", "risk_coverage.png", "evaluation.json"):
        assert (folder / name).stat().st_size > 0
    assert "| adapter | test |" in (folder / "report.md").read_text()
    base = outcome.summary.evaluation.base[TEST]
    row = results_table([outcome.summary]).splitlines()[2]
    assert row.startswith(f"| trend | {base.accuracy:.3f} ({base.label_accuracy:.3f}) | ")


async def test_the_published_adapter_serves_with_the_confidence_evaluation_measured(
    smoke_run: Any, base_dir: Path, tokenizer: Any
) -> None:
    from peft import PeftModel

    from finetune.evaluate.scoring import score_examples
    from finetune.task_run import load_dataset
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    outcome, options = smoke_run
    registry = AdapterRegistry(options.adapters, base_sha256=model_content_hash(base_dir))
    assert registry.refresh().added == (f"trend@{outcome.summary.version}",)
    spec = registry.get("trend")
    assert spec is not None and spec.adapter is not None and spec.adapter.path == str(outcome.adapter_dir)
    dataset = load_dataset("trend", options)
    examples = dataset.split(TEST)[:3]
    encoder = ChatEncoder(tokenizer, dataset.template, dataset.labels)
    model = PeftModel.from_pretrained(load_model(base_dir), spec.adapter.path).eval()
    measured = score_examples(model, tokenizer, encoder, examples).confidence(spec.calibration_temperature)
    backend = TransformersBackend(TransformersSettings(model_dir=base_dir, model_name="base"))
    try:
        for example, expected in zip(examples, measured, strict=True):
            messages = (Message(Role.SYSTEM, spec.system_prompt), Message(Role.USER, example.input))
            call = BackendCall("r", messages, max_tokens=3, adapter=spec.adapter, labels=spec.labels)
            completion = await backend.generate(call)
            served = score(completion.text, completion.tokens, spec.labels, temperature=spec.calibration_temperature)
            assert served.confidence == pytest.approx(expected, abs=2e-3)
    finally:
        await backend.aclose()


def test_shared_prefix_forward_gives_the_same_loss(base_dir: Path, tokenizer: Any) -> None:
    model = load_model(base_dir).eval()
    encoder = ChatEncoder(tokenizer, TEMPLATE, ("up", "down"))
    batch = [encoder.encode(ex) for ex in TOY[:4]]
    loss = AnswerLoss(model, pad_id=2)
    with torch.no_grad():
        plain = loss([], batch)
        n = 5
        assert batch[0].prompt[:n] == batch[1].prompt[:n]
        shared = loss(list(batch[0].prompt[:n]), batch)
    assert float(shared) == pytest.approx(float(plain), rel=1e-4)


def test_training_resumes_from_its_checkpoint(
    base_dir: Path, tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune.train import lora as train_module

    encoder = ChatEncoder(tokenizer, TEMPLATE, ("up", "down"))
    settings = TrainSettings(max_steps=4, batch_size=2, learning_rate=2e-3, warmup_steps=1, checkpoint_every_s=0)
    real_step = train_module._Loop.step

    def interrupted(self: Any) -> tuple[float, float]:
        if self.state.step == 2:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(train_module._Loop, "step", interrupted)

    def run(s: TrainSettings, folder: Path) -> Any:
        return train(lora_model(load_model(base_dir), s), encoder, TOY, s, folder, pad_id=2, progress=False)

    with pytest.raises(KeyboardInterrupt):
        run(settings, tmp_path)
    assert (tmp_path / "state.json").is_file()
    monkeypatch.setattr(train_module._Loop, "step", real_step)
    resumed = run(settings, tmp_path)
    fresh = run(settings, tmp_path / "other")
    assert resumed.resumed_from_step == 2 and resumed.steps == 4
    assert resumed.losses == pytest.approx(fresh.losses, rel=1e-3)  # the same run as if never interrupted
    other = replace(settings, learning_rate=1e-3)  # other settings never resume a checkpoint that is not theirs
    again = run(other, tmp_path)
    assert again.resumed_from_step == 0


def test_training_stops_once_the_watched_validation_loss_plateaus(
    base_dir: Path, tokenizer: Any, tmp_path: Path
) -> None:
    encoder = ChatEncoder(tokenizer, TEMPLATE, ("up", "down"))
    # learning rate 0: the watched loss cannot improve, so the second check (step 4) ends the run
    settings = TrainSettings(
        max_steps=8, batch_size=2, learning_rate=0.0, warmup_steps=1, plateau_every=2, plateau_patience=1
    )

    def run(folder: Path, watched: list[Example]) -> Any:
        model = lora_model(load_model(base_dir), settings)
        return train(model, encoder, TOY, settings, folder, pad_id=2, progress=False, monitor=watched)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the pipeline trains: on 2 busy cores one thread is several times faster
    try:
        stopped = run(tmp_path / "watched", TOY[:4])
        unwatched = run(tmp_path / "unwatched", [])
    finally:
        torch.set_num_threads(threads)
    assert (stopped.stopped_by, stopped.steps) == ("plateau", 4)
    curve = stopped.extra["validation_curve"]
    assert [step for step, _ in curve] == [2, 4] and curve[1][1] == pytest.approx(curve[0][1])
    assert stopped.extra["watched_rows"] == 4
    assert (unwatched.stopped_by, unwatched.steps, unwatched.extra["validation_curve"]) == ("steps", 8, [])


def test_labels_the_scorer_could_not_tell_apart_are_refused(tokenizer: Any) -> None:
    with pytest.raises(LabelTokenError, match=r"overbought|oversold"):
        ChatEncoder(tokenizer, TEMPLATE, ("overbought", "oversold", "neutral"))
    assert ChatEncoder(tokenizer, TEMPLATE, ("up", "down", "flat")).labels == ("up", "down", "flat")


def test_lora_on_chosen_layers_only(base_dir: Path) -> None:
    model = lora_model(load_model(base_dir), TrainSettings(layers=(28, 29)))
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {"28", "29"}
    kinds = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_two_processes_under_accelerate_launch_train_one_adapter(base_dir: Path, tmp_path: Path) -> None:
    """The multi-GPU path, run on CPU: `accelerate launch` starts two processes (gloo) that train
    one adapter together, each on its half of every batch; the main process alone publishes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [Path(sys.executable).with_name("accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(port)]
    finetune = ["-m", "finetune", "--smoke", "--tasks", "trend", "--artifacts", str(tmp_path), "--no-progress"]
    env = {**os.environ, "HOME": str(Path.home()), "OMP_NUM_THREADS": "1"}
    command = [*map(str, launch), *finetune]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    [folder] = (tmp_path / "adapters" / "trend").iterdir()
    card = read_card(folder)
    card.check_base(model_content_hash(base_dir))
    assert card.training["processes"] == 2 and card.training["steps"] == 6
    assert card.training["examples_seen"] == 2 * 6 * card.training["batch_size"]
    assert len(list((tmp_path / "runs").iterdir())) == 1  # one report, from the main process
    assert not list((tmp_path / "checkpoints").iterdir())
    assert done.stdout.count(" (report ") == 1  # one "trend: <adapter> (report ...)" line, from the main process
