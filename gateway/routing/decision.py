"""One request, decided: what access control and the policy made of it, for every layer and observer below.

`Router.decide(request)` builds it once per request: the effective request
(LOCAL_ONLY when the plan keeps it on the box, whether privacy, a local-only API
key, `offline` or a rule said so), the task it resolved to, the policy's plan
(with the rule that matched) and the call a tier would be sent. The response
cache keys on it (gateway/routing/cache_policy.py), the router executes it
without re-deriving anything, every answer carries its effective request back
to the observers (`Result.request`), and the audit asks for one as an
escalation would (gateway/routing/audit.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from gateway.core.contracts import BackendCall, Delta, ModelEntry, Request, Result, TaskSpec
from gateway.routing.policy import Plan


@dataclass(frozen=True, slots=True)
class Decision:
    request: Request  # as access control and the policy shaped it
    task: TaskSpec  # the task it resolved to (adapter, labels, system prompt, threshold in force)
    plan: Plan  # where it may go, the rule that matched, the threshold
    call: BackendCall  # what a local backend or provider is sent


class Decider(Protocol):
    """What decides a request and then executes the decision (gateway/routing/router.py).

    The response cache sits between the two: it keys on the decision and executes
    it only on a miss.
    """

    def decide(self, request: Request) -> Decision: ...

    async def execute(self, decision: Decision) -> Result: ...

    def execute_stream(self, decision: Decision) -> AsyncGenerator[Delta | Result, None]:
        """Delta pieces, then exactly one Result."""
        ...

    def models(self) -> list[ModelEntry]: ...
