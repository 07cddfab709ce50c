"""`[models] aliases`: model names clients already send (`gpt-4o-mini`), resolved to what the gateway serves.

A target is `""` (route: local first), a local model or adapter (a local pin), or
`provider/model` (a remote pin). The router resolves the alias before anything else
reads `model`, so the policy, the cache key and the observers see the target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gateway.core.contracts import Request


@dataclasses.dataclass(frozen=True, slots=True)
class Aliases:
    targets: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))

    def resolve(self, request: Request) -> Request:
        """The request with an aliased `model` replaced by its target; any other request as it is."""
        target = self.targets.get(request.model)
        if target is None:
            return request
        return dataclasses.replace(request, model=target)
