"""The processes of one training run: a single one by default, several under `accelerate launch`
(or torchrun). Every process trains its slice of each batch; the main process alone writes
data, evaluates and publishes, and its clock decides the learning rate and the stop for all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def make_accelerator() -> Any:
    """The run's Accelerator: on GPUs one device per process (NCCL); without a GPU, several
    launched processes train on CPU over gloo."""
    import torch
    from accelerate import Accelerator  # type: ignore[import-untyped]
    from accelerate.utils import InitProcessGroupKwargs  # type: ignore[import-untyped]

    # helpers wait at the next task's first collective while the main process evaluates and publishes
    patience = InitProcessGroupKwargs(timeout=timedelta(hours=2))
    return Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[patience])


def from_main(accelerator: Any, values: list[float]) -> list[float]:
    """The main process's values, on every process."""
    if accelerator.num_processes == 1:
        return values
    import torch
    from accelerate.utils import broadcast  # type: ignore[import-untyped]

    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return [float(v) for v in broadcast(tensor, from_process=0).tolist()]
