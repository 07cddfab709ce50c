"""Task catalogs: tasks declared in config, and a chain that asks several catalogs in order."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import TaskConfig
from gateway.core.contracts import TaskCatalog, TaskSpec

GENERAL = TaskSpec(name="")


class ConfigTasks:
    """Tasks declared under [tasks.NAME] in the config: a label set and a threshold, no adapter."""

    def __init__(self, tasks: Mapping[str, TaskConfig]) -> None:
        self._specs = {
            name: TaskSpec(
                name=name,
                labels=tuple(t.labels),
                threshold=t.min_confidence,
                system_prompt=t.system_prompt,
                compact_prompt=t.compact_prompt,
            )
            for name, t in tasks.items()
        }

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def all(self) -> list[TaskSpec]:
        return list(self._specs.values())


class ChainedTasks:
    """The first catalog that knows a task wins (adapter cards before config)."""

    def __init__(self, *catalogs: TaskCatalog) -> None:
        self._catalogs = catalogs

    def get(self, name: str) -> TaskSpec | None:
        if not name:
            return GENERAL
        for catalog in self._catalogs:
            spec = catalog.get(name)
            if spec is not None:
                return spec
        return None

    def all(self) -> list[TaskSpec]:
        seen: dict[str, TaskSpec] = {}
        for catalog in self._catalogs:
            for spec in catalog.all():
                seen.setdefault(spec.name, spec)
        return list(seen.values())
