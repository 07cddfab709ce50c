"""The local-first loop: local attempt -> confidence -> escalation to the remote tier.

`decide()` resolves the task and asks the policy for a plan, once per request
(a `Decision`: gateway/routing/decision.py); `execute()` checks local capacity,
runs the local backend, scores its answer, and escalates when the plan and the
score say so, without re-deriving any of the decision. It returns a `Result`
with every attempt recorded and the effective request it answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from gateway.config import RoutingConfig
from gateway.core import confidence, stops, structured, tools, trace
from gateway.core.contracts import (
    Attempt,
    BackendCall,
    Completion,
    Delta,
    Escalation,
    LocalBackend,
    LocalLoad,
    Message,
    ModelEntry,
    Request,
    ResponseFormat,
    Result,
    Role,
    TaskCatalog,
    TaskSpec,
    Tier,
)
from gateway.core.errors import (
    CapacityExceeded,
    DeadlineExceeded,
    GatewayError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from gateway.routing import hedge, policy
from gateway.routing.admission import Admission, Gate, Klass, Permit, Refusal
from gateway.routing.aliases import Aliases
from gateway.routing.capacity import CapacityDecision, check_capacity
from gateway.routing.decision import Decision
from gateway.routing.local_latency import LocalLatency

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_TOP_LOGPROBS = 20  # alternatives per token a client may ask for (OpenAI's limit)


class RemoteResult(Protocol):
    @property
    def completion(self) -> Completion: ...

    @property
    def attempts(self) -> tuple[Attempt, ...]: ...


class RemoteTier(Protocol):
    """The commercial providers behind one call (gateway/remote/tier.py)."""

    def providers(self) -> tuple[str, ...]: ...

    def models(self) -> list[ModelEntry]: ...

    async def complete(
        self,
        call: BackendCall,
        *,
        order: tuple[str, ...],
        deadline: float | None,
        urgent: bool = False,
        attempts: list[Attempt] | None = None,
    ) -> RemoteResult: ...

    def stream(
        self, call: BackendCall, *, order: tuple[str, ...], deadline: float | None, urgent: bool = False
    ) -> AsyncIterator[Delta | RemoteResult]: ...


@dataclass(frozen=True, slots=True)
class _LocalOutcome:
    completion: Completion | None
    confidence: float | None
    escalation: Escalation
    attempt: Attempt | None


class Router:
    def __init__(
        self,
        local: LocalBackend,
        tasks: TaskCatalog,
        routing: RoutingConfig,
        *,
        remote: RemoteTier | None = None,
        offline: bool = False,
        tracer: trace.Tracer = trace.NO_TRACER,
        local_latency: LocalLatency | None = None,
        aliases: Aliases | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._local = local
        self._admission = admission or Admission()  # each tier's adaptive limit and queue
        self._aliases = aliases or Aliases()
        self._tasks = tasks
        self._routing = routing
        self._remote = remote
        self._offline = offline
        self._tracer = tracer
        self._local_latency = local_latency or LocalLatency()  # local answer times: the default hedge delay

    # -- public --------------------------------------------------------------------

    async def generate(self, request: Request) -> Result:
        return await self.execute(self.decide(request))

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        events = self.execute_stream(self.decide(request))
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # a consumer that leaves stops the tiers now, not at collection

    async def execute(self, decision: Decision) -> Result:
        """Answer a decided request: the local tier first when the plan says so, then the remote tier."""
        started = time.perf_counter()
        request, task, the_plan, call = decision.request, decision.task, decision.plan, decision.call
        outcome = _LocalOutcome(None, None, _straight_escalation(the_plan), None)
        if the_plan.try_local:
            hedge_after_s = self._hedge_after_s(the_plan, task)
            if hedge_after_s is None:
                outcome = await self._run_local(request, call, task, the_plan)
            else:
                raced = await self._race(request, call, task, the_plan, hedge_after_s)
                if raced.hedged:
                    return self._hedged(request, started, raced)
                assert raced.local is not None  # not hedged: the local attempt finished in time
                outcome = raced.local
        return await self._after_local(request, started, the_plan, call, outcome)

    async def _after_local(
        self, request: Request, started: float, the_plan: policy.Plan, call: BackendCall, outcome: _LocalOutcome
    ) -> Result:
        """Escalate when the plan and the local outcome say so, else answer locally."""
        attempts: list[Attempt] = [] if outcome.attempt is None else [outcome.attempt]
        if (
            the_plan.remote_allowed
            and self._remote is not None
            and (outcome.escalation is not Escalation.NONE or the_plan.pinned_remote)
        ):
            try:
                remote = await self._remote_complete(request, call, the_plan)
            except (ResourceExhausted, Unavailable, DeadlineExceeded) as exc:
                if outcome.completion is None:
                    raise
                attempts.extend(getattr(exc, "attempts", ()))
                log.info(
                    "remote tier could not serve; answering locally",
                    extra={"request_id": request.request_id, "reason": exc.message},
                )
            else:
                attempts.extend(remote.attempts)
                local_text = outcome.completion.text if outcome.completion is not None else ""
                return self._finish(
                    request,
                    started,
                    remote.completion,
                    Tier.REMOTE,
                    outcome.confidence,
                    outcome.escalation,
                    attempts,
                    local_text=local_text,
                )
        if outcome.completion is not None:
            escalation = outcome.escalation if the_plan.remote_allowed else Escalation.NONE
            return self._finish(
                request, started, outcome.completion, Tier.LOCAL, outcome.confidence, escalation, attempts
            )
        raise self._no_tier_error(outcome, the_plan.remote_allowed)

    def execute_stream(self, decision: Decision) -> AsyncGenerator[Delta | Result, None]:
        """Local tokens stream live; a request that goes remote before any token streams from the provider.

        Once local text has been sent it cannot be taken back, so a streamed local
        answer is not escalated on confidence: the final chunk carries the
        confidence for the client to act on.
        """
        if decision.call.response_format is not None:
            return self._execute_whole(decision)
        return self._execute_text_stream(decision)

    async def _execute_whole(self, decision: Decision) -> AsyncGenerator[Delta | Result, None]:
        """A structured answer is validated whole before any of it is sent: it streams as one piece."""
        result = await self.execute(decision)
        if result.text or result.tool_calls:
            yield Delta(result.text, tools.deltas(result.tool_calls))
        yield result

    async def _execute_text_stream(self, decision: Decision) -> AsyncGenerator[Delta | Result, None]:
        started = time.perf_counter()
        request, task, the_plan, call = decision.request, decision.task, decision.plan, decision.call
        escalation = _straight_escalation(the_plan)
        attempts: list[Attempt] = []
        if the_plan.try_local:
            load = self._local.load()
            with self._tracer.span("gateway.local", self._local_attributes(load)) as span:
                room = self._local_room(request, call, load)
                capacity = CapacityDecision(False, room) if isinstance(room, str) else CapacityDecision(True)
                if isinstance(room, Permit):
                    local_started, local_started_ns = time.perf_counter(), time.time_ns()
                    try:
                        with trace.waiting(), self._admission.waiting():  # the backend, and the consumer
                            async for event in _stream_held(room, self._local.stream(call)):
                                if isinstance(event, Delta):
                                    yield event
                                    continue
                                self._local_phases(event, local_started_ns)
                                score = self._score(event, task)
                                attempt = Attempt(
                                    self._local.name, event.model, "ok", _ms(local_started), tokens=event.usage.total
                                )
                                _local_outcome(span, _LocalOutcome(event, score, Escalation.NONE, attempt))
                                yield self._finish(
                                    request, started, event, Tier.LOCAL, score, Escalation.NONE, [attempt]
                                )
                        return
                    except CapacityExceeded as exc:
                        capacity = CapacityDecision(False, exc.message)
                attempt = Attempt(self._local.name, self._local.model, "skipped", 0.0, capacity.reason)
                _local_outcome(span, _LocalOutcome(None, None, Escalation.LOCAL_CAPACITY, attempt))
            attempts.append(attempt)
            escalation = Escalation.LOCAL_CAPACITY
        if not the_plan.remote_allowed or self._remote is None:
            raise self._no_tier_error(_LocalOutcome(None, None, escalation, attempts[-1] if attempts else None), False)
        with self._admission.waiting():  # the provider's queue and its answer: not the gateway's own work
            gate = self._provider_gate(the_plan)
            held = None if gate is None else await gate.enter(self._admission.klass(request), request.deadline)
            remote_events = self._remote.stream(
                call, order=the_plan.order, deadline=request.deadline, urgent=the_plan.urgent
            )
            async for remote_event in remote_events if held is None else _stream_held(held, remote_events):
                if isinstance(remote_event, Delta):
                    yield remote_event
                else:
                    attempts.extend(remote_event.attempts)
                    completion = remote_event.completion
                    yield self._finish(request, started, completion, Tier.REMOTE, None, escalation, attempts)

    def _local_room(self, request: Request, call: BackendCall, load: LocalLoad) -> Permit | str:
        """Room at the local tier: its deadline estimate (routing/capacity.py), then its limit; else why not."""
        klass = self._admission.klass(request)
        capacity = check_capacity(
            load,
            request.remaining_s(),
            max_tokens=call.max_tokens,
            label=bool(call.labels),
            sheddable=klass is not Klass.URGENT,
        )
        if not capacity.ok:
            return capacity.reason
        permit = self._admission.local().try_enter(klass)
        return permit.reason if isinstance(permit, Refusal) else permit

    def _provider_gate(self, the_plan: policy.Plan) -> Gate | None:
        """The admission gate of the provider the remote tier tries first for this plan; None when it has none."""
        providers = self._remote.providers() if self._remote is not None else ()
        first = next((name for name in the_plan.order if name in providers), None)
        return None if first is None else self._admission.provider(first)

    async def _remote_complete(
        self,
        request: Request,
        call: BackendCall,
        the_plan: policy.Plan,
        *,
        urgent: bool | None = None,
        attempts: list[Attempt] | None = None,
    ) -> RemoteResult:
        """The remote tier's answer, holding room at the first provider's gate (waiting for it in its bounded
        queue; Shed, a RESOURCE_EXHAUSTED with a retry-after, when the wait would pass the deadline)."""
        remote = self._remote
        assert remote is not None
        extra = {} if attempts is None else {"attempts": attempts}
        gate = self._provider_gate(the_plan)
        with self._admission.waiting():  # the provider's queue and its answer: not the gateway's own work
            permit = None if gate is None else await gate.enter(self._admission.klass(request), request.deadline)
            answered = dropped = False
            try:
                result = await remote.complete(
                    call,
                    order=the_plan.order,
                    deadline=request.deadline,
                    urgent=the_plan.urgent if urgent is None else urgent,
                    **extra,
                )
                answered = True
                return result
            except DeadlineExceeded:
                dropped = True  # the provider did not answer in time: a sign of overload
                raise
            finally:
                if permit is not None:
                    permit.release(answered=answered, dropped=dropped)

    def _hedge_after_s(self, the_plan: policy.Plan, task: TaskSpec) -> float | None:
        """When a remote call starts beside this request's local attempt; None = no hedge.

        `hedge_after_ms` when set, else the p95 of the task's recent local answer times
        (at least `hedge_min_ms`); no hedge before enough local answers were seen.
        """
        if not the_plan.hedge or self._remote is None:
            return None
        if self._routing.hedge_after_ms is not None:
            return self._routing.hedge_after_ms / 1000
        p95 = self._local_latency.quantile_s(task.name)
        return None if p95 is None else max(p95, self._routing.hedge_min_ms / 1000)

    async def _race(
        self, request: Request, call: BackendCall, task: TaskSpec, the_plan: policy.Plan, after_s: float
    ) -> hedge.Race[_LocalOutcome, RemoteResult]:
        remote = self._remote
        assert remote is not None

        def start_remote(attempts: list[Attempt]) -> Awaitable[RemoteResult]:
            return self._remote_complete(request, call, the_plan, urgent=True, attempts=attempts)

        return await hedge.race(
            self._run_local(request, call, task, the_plan),
            start_remote,
            after_s=after_s,
            accept=lambda outcome: outcome.completion is not None and outcome.escalation is Escalation.NONE,
            expected=(ResourceExhausted, Unavailable, DeadlineExceeded),
        )

    def _hedged(self, request: Request, started: float, raced: hedge.Race[_LocalOutcome, RemoteResult]) -> Result:
        """The answer of a raced request, with both sides' attempts; the side that lost shows as cancelled."""
        waited = f"no local answer within {raced.after_ms:.0f} ms"
        if raced.local is None:  # the provider answered first
            assert raced.remote is not None
            self._local_latency.observe(request.task, raced.local_ms / 1000)  # at least this slow
            answer = raced.remote.completion
            lost = Attempt(
                self._local.name,
                self._local.model,
                "cancelled",
                round(raced.local_ms, 3),
                f"hedged: {answer.provider} answered first ({waited})",
            )
            attempts = [lost, *raced.remote.attempts]
            return self._finish(request, started, answer, Tier.REMOTE, None, Escalation.LOCAL_CAPACITY, attempts)
        local = raced.local
        attempts = [] if local.attempt is None else [local.attempt]
        if raced.remote is not None:  # the local answer was not enough: the hedge was the escalation
            attempts.extend(raced.remote.attempts)
            local_text = local.completion.text if local.completion is not None else ""
            return self._finish(
                request,
                started,
                raced.remote.completion,
                Tier.REMOTE,
                local.confidence,
                local.escalation,
                attempts,
                local_text=local_text,
            )
        if raced.remote_error is None:  # the local answer won: the remote call was cancelled
            lost_remote = [
                replace(a, error="hedged: the local answer came first") if a.outcome == "cancelled" else a
                for a in raced.remote_attempts
            ]
            attempts.extend(lost_remote or [Attempt("remote", "", "cancelled", 0.0, "hedged: no provider tried yet")])
        else:
            attempts.extend(getattr(raced.remote_error, "attempts", ()))
        if local.completion is None:
            raise raced.remote_error or self._no_tier_error(local, True)
        return self._finish(
            request, started, local.completion, Tier.LOCAL, local.confidence, local.escalation, attempts
        )

    async def second_opinion(self, decision: Decision, provider: str, *, timeout_s: float = 60.0) -> Result | None:
        """The remote answer to a decided request the local tier answered (the audit), from `provider` alone.

        None when the plan keeps the request on the box or does not allow that provider for it.
        """
        the_plan = decision.plan
        if not the_plan.remote_allowed or self._remote is None or provider not in the_plan.order:
            return None
        started = time.perf_counter()
        remote = await self._remote.complete(decision.call, order=(provider,), deadline=time.monotonic() + timeout_s)
        return self._finish(
            decision.request, started, remote.completion, Tier.REMOTE, None, Escalation.NONE, list(remote.attempts)
        )

    def models(self) -> list[ModelEntry]:
        """Everything a client can name in `model`: the local model, its adapters, the providers."""
        entries = [ModelEntry(self._local.model, Tier.LOCAL, self._local.name)]
        for spec in self._tasks.all():
            if spec.adapter is not None:
                metrics = dict(spec.metrics)
                if spec.threshold is not None:
                    metrics.setdefault("threshold", spec.threshold)
                entries.append(ModelEntry(spec.adapter.name, Tier.LOCAL, self._local.name, spec.name, metrics))
        if self._remote is not None:
            entries.extend(self._remote.models())
        for alias in self._aliases.names():  # as their target: "" (local first) lists the local tier
            provider, slash, _ = self._aliases.targets[alias].partition("/")
            if slash:
                entries.append(ModelEntry(alias, Tier.REMOTE, provider))
            else:
                entries.append(ModelEntry(alias, Tier.LOCAL, self._local.name))
        return entries

    # -- steps ---------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """The request as the policy shapes it, with its task, plan and call: asked once per request.

        Raises InvalidArgument for an unknown task, a pin the rules forbid, or max_tokens past the local context.
        """
        sent = request.model
        request = self._aliases.resolve(request)
        task = self._tasks.get(request.task)
        if task is None:
            known = sorted(spec.name for spec in self._tasks.all())
            raise InvalidArgument(
                f"task: unknown task '{request.task}'; known tasks: {', '.join(known) or '(none configured)'}, "
                "or leave it empty for general requests"
            )
        providers = self._remote.providers() if self._remote is not None else ()
        local_models = frozenset({self._local.model} | {s.adapter.name for s in self._tasks.all() if s.adapter})
        try:
            the_plan = policy.plan(
                request,
                task,
                self._routing,
                offline=self._offline,
                providers=providers,
                local_models=local_models,
                aliases=self._aliases.names(),
                local_tools=tools.supports(self._local),
            )
        except InvalidArgument as exc:
            if sent == request.model:
                raise
            alias = f"'{sent}' is an alias of '{request.model}' in [models] aliases"
            raise InvalidArgument(f"{exc.message} ({alias})") from None
        if the_plan.try_local and request.max_tokens > self._local.context_length:
            raise InvalidArgument(
                f"max_tokens: {request.max_tokens} exceeds the local model's context of "
                f"{self._local.context_length} tokens; lower it"
            )
        _check_stop(request.stop)
        _check_top_logprobs(request.top_logprobs)
        self._check_response_format(request.response_format, the_plan)
        tools.check(request.tools, request.tool_choice, request.messages)
        request = policy.effective(request, the_plan)
        messages = request.messages
        if task.system_prompt and messages[0].role is not Role.SYSTEM:
            messages = (Message(Role.SYSTEM, task.system_prompt), *messages)
        call = BackendCall(
            request_id=request.request_id,
            messages=messages,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            adapter=task.adapter,
            labels=task.labels,
            model=the_plan.remote_model,
            deadline=request.deadline,
            stop=request.stop,
            response_format=request.response_format,
            compact_prompt=task.compact_prompt,
            tools=request.tools,
            tool_choice=request.tool_choice,
            parallel_tool_calls=request.parallel_tool_calls,
        )
        return Decision(request, task, the_plan, call)

    def _check_response_format(self, fmt: ResponseFormat | None, the_plan: policy.Plan) -> None:
        """A valid schema, and a tier that can give a structured answer: a local backend that constrains its
        decoding, or the remote tier (InvalidArgument naming what to change otherwise)."""
        if fmt is None:
            return
        structured.check(fmt)
        remote = the_plan.remote_allowed and self._remote is not None
        if not remote and not (the_plan.try_local and structured.can_constrain(self._local)):
            where = the_plan.keep_local or "no remote provider is enabled"
            raise InvalidArgument(
                f"response_format: the local backend ({self._local.name}) cannot constrain its answer to JSON and "
                f"{where}; drop response_format, or serve the local tier with vLLM, llama.cpp or Ollama"
            )

    async def _run_local(
        self, request: Request, call: BackendCall, task: TaskSpec, the_plan: policy.Plan
    ) -> _LocalOutcome:
        load = self._local.load()
        with self._tracer.span("gateway.local", self._local_attributes(load)) as span:
            outcome = await self._local_attempt(request, call, task, the_plan, load)
            _local_outcome(span, outcome)
        return outcome

    def _local_attributes(self, load: LocalLoad) -> trace.Attributes:
        return {
            "gateway.backend": self._local.name,
            "gateway.local.in_flight": load.in_flight,
            "gateway.local.queue_estimate_ms": round(load.est_wait_s * 1000, 3),
        }

    async def _local_attempt(
        self, request: Request, call: BackendCall, task: TaskSpec, the_plan: policy.Plan, load: LocalLoad
    ) -> _LocalOutcome:
        if call.response_format is not None and not structured.can_constrain(self._local):
            reason = f"{self._local.name} cannot constrain its answer to JSON"
            attempt = Attempt(self._local.name, self._local.model, "skipped", 0.0, reason)
            return _LocalOutcome(None, None, Escalation.LOCAL_ERROR, attempt)
        permit = self._local_room(request, call, load)
        if isinstance(permit, str):
            attempt = Attempt(self._local.name, self._local.model, "skipped", 0.0, permit)
            return _LocalOutcome(None, None, Escalation.LOCAL_CAPACITY, attempt)
        started, started_ns = time.perf_counter(), time.time_ns()
        try:
            with trace.waiting(), self._admission.waiting():
                completion = await _held(permit, self._local.generate(call))
        except CapacityExceeded as exc:
            attempt = Attempt(self._local.name, self._local.model, "skipped", _ms(started), exc.message)
            return _LocalOutcome(None, None, Escalation.LOCAL_CAPACITY, attempt)
        except (InvalidArgument, DeadlineExceeded):
            raise
        except Exception as exc:  # noqa: BLE001 - any local failure is a reason to escalate, never a crash
            log.warning("local backend failed", extra={"request_id": request.request_id, "error": repr(exc)})
            attempt = Attempt(self._local.name, self._local.model, "error", _ms(started), _describe(exc))
            return _LocalOutcome(None, None, Escalation.LOCAL_ERROR, attempt)
        self._local_latency.observe(task.name, time.perf_counter() - started)
        self._local_phases(completion, started_ns)
        invalid = None if call.response_format is None else structured.problem(completion.text, call.response_format)
        if invalid is not None:  # never sent: the remote tier answers instead
            attempt = Attempt(
                self._local.name, completion.model, "invalid", _ms(started), invalid, tokens=completion.usage.total
            )
            return _LocalOutcome(None, None, Escalation.LOCAL_ERROR, attempt)
        score = self._score(completion, task, call.response_format)
        low = policy.should_escalate(score, the_plan.threshold)
        outcome = "low_confidence" if low else "ok"
        attempt = Attempt(self._local.name, completion.model, outcome, _ms(started), tokens=completion.usage.total)
        return _LocalOutcome(completion, score, Escalation.LOW_CONFIDENCE if low else Escalation.NONE, attempt)

    def _local_phases(self, completion: Completion, started_ns: int) -> None:
        """Child spans of the local attempt, when the backend says how long the call waited for the model:
        `gateway.local.queue` (until its first model pass) and `gateway.local.generate` (the rest)."""
        if completion.queued_s is None:
            return
        ended_ns = time.time_ns()
        first_pass_ns = min(started_ns + int(completion.queued_s * 1e9), ended_ns)
        self._tracer.record("gateway.local.queue", started_ns, first_pass_ns)
        tokens = {"gen_ai.usage.output_tokens": completion.usage.completion_tokens}
        self._tracer.record("gateway.local.generate", first_pass_ns, ended_ns, tokens)

    def _score(self, completion: Completion, task: TaskSpec, fmt: ResponseFormat | None = None) -> float | None:
        """The token quantile (or label probability); a structured answer's from its values' tokens and its
        enum fields' choices (core/structured.py)."""
        if fmt is not None and not task.labels:
            return structured.answer_confidence(
                completion.text, completion.tokens, fmt, self._routing.confidence_quantile
            )
        score = confidence.score(
            completion.text,
            completion.tokens,
            task.labels,
            quantile=self._routing.confidence_quantile,
            temperature=task.calibration_temperature,
        ).confidence
        enum = None if fmt is None else structured.enum_confidence(completion.text, completion.tokens, fmt)
        if enum is None:
            return score
        return enum if score is None else min(score, enum)

    def _finish(
        self,
        request: Request,
        started: float,
        completion: Completion,
        tier: Tier,
        local_confidence: float | None,
        escalation: Escalation,
        attempts: list[Attempt],
        *,
        local_text: str = "",
    ) -> Result:
        return Result(
            request_id=request.request_id,
            text=completion.text,
            tier=tier,
            provider=completion.provider,
            model=completion.model,
            confidence=local_confidence,
            escalation=escalation,
            usage=completion.usage,
            attempts=tuple(attempts),
            finish_reason=completion.finish_reason,
            latency_ms=_ms(started),
            task=request.task,
            local_text=local_text,
            request=request,
            tokens=completion.tokens,
            tool_calls=completion.tool_calls,
        )

    def _no_tier_error(self, outcome: _LocalOutcome, remote_allowed: bool) -> GatewayError:
        reason = outcome.attempt.error if outcome.attempt else ""
        where = (
            "no remote provider is enabled"
            if remote_allowed or self._remote is None
            else "the request may not leave the box"
        )
        if outcome.escalation is Escalation.LOCAL_CAPACITY:
            return ResourceExhausted(
                f"local tier has no capacity ({reason}) and {where}; retry later or raise the deadline",
                resets_at=self._admission.local_retry_at(),
            )
        return Unavailable(f"local tier failed ({reason}) and {where}")


def _straight_escalation(the_plan: policy.Plan) -> Escalation:
    """Why a request goes to the remote tier before any local attempt (NONE when it tries the local tier)."""
    if the_plan.rule_escalation:
        return Escalation.RULE
    if the_plan.tools_remote:
        return Escalation.TOOLS
    return Escalation.NONE


def _check_stop(stop: tuple[str, ...]) -> None:
    """Stop sequences every tier accepts: at most MAX_STOPS (OpenAI's limit), none empty."""
    if len(stop) > stops.MAX_STOPS:
        raise InvalidArgument(f"stop: {len(stop)} stop sequences; send at most {stops.MAX_STOPS}")
    if any(not sequence for sequence in stop):
        raise InvalidArgument("stop: a stop sequence must not be empty; drop it")


def _check_top_logprobs(top: int | None) -> None:
    if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidArgument(f"top_logprobs: {top} is out of range; use 0 to {MAX_TOP_LOGPROBS}")


async def _held(permit: Permit, work: Awaitable[Completion]) -> Completion:
    """`work` under an admission permit: its time teaches the tier's limit when it answered."""
    answered = False
    try:
        completion = await work
        answered = True
        return completion
    finally:
        permit.release(answered=answered)


async def _stream_held(permit: Permit, events: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """A stream under an admission permit, released when it ends or its consumer leaves. A stream's time
    includes its consumer's pace, so it does not move the limit."""
    try:
        async for event in events:
            yield event
    finally:
        permit.release(answered=False)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _local_outcome(span: trace.Span, outcome: _LocalOutcome) -> None:
    """How the local attempt ended, on its span: outcome, model, confidence, tokens; never text."""
    if outcome.attempt is not None:
        span.set_attribute("gateway.outcome", outcome.attempt.outcome)
        span.set_attribute("gateway.model", outcome.attempt.model)
        if outcome.attempt.error:
            span.set_attribute("gateway.error", outcome.attempt.error)
    if outcome.confidence is not None:
        span.set_attribute("gateway.confidence", outcome.confidence)
    if outcome.escalation is not Escalation.NONE:
        span.set_attribute("gateway.escalation", outcome.escalation.value)
    if outcome.completion is not None:
        span.set_attribute("gen_ai.usage.input_tokens", outcome.completion.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", outcome.completion.usage.completion_tokens)


def _describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
