"""Workflow steps in the worker: what a finished task owes the rest of its workflow.

The executor calls in here only for messages that carry a `flow` (canvas.py describes it):
`prepare_step` before a step runs (a step that must record an earlier failure instead of
running; a chord callback waiting for its members), `finish_step` once it ran (enqueue the
next steps, call errbacks, count chord members).

Everything a step enqueues for its workflow goes in before its own settle, with a dedup key
derived from the next step's pre-assigned id (`flow:<id>`), kept for `result_ttl` after that
step settled. A step that runs again (its worker died, or lost its lease, before the settle
landed) therefore enqueues nothing twice. The chord callback is enqueued exactly once the same
way; the chord counter only decides *when* to try (docs/workflows.md has the reasoning).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import tracing
from ..backends.base import (
    FAILURE,
    SUCCESS,
    TERMINAL_STATES,
    Ack,
    Bury,
    Delivery,
    Message,
    Release,
    Settlement,
    StoredResult,
)
from ..canvas import Node, member_id
from ..envelope import Envelope
from ..errors import SerializationError, TaskFailed
from .executor import Executor, Finished, Prepared, run_inline

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.worker")

DEDUP_PREFIX = "flow:"  # dedup key of a workflow step enqueued by a worker: flow:<its id>
JOIN_WAIT = 1.0  # seconds a chord callback waits in place for its members' results
JOIN_POLL_MAX = 2.0  # then it is given back and looked at again after at most this long
RUN_AGAIN_AFTER = 1.0  # seconds before a step whose next steps could not be enqueued reruns


# --- how steps reach the backend (or, in eager mode, this process) ---------------------------
class Ops:
    def __init__(self, app: Conveyor) -> None:
        self.app = app

    def enqueue(self, messages: Sequence[Message]) -> None:
        self.app.backend.enqueue(messages, self.app.clock.now())

    def incr(self, key: str, by: int, ttl: float) -> int:
        return self.app.backend.incr(key, by, ttl, self.app.clock.now())

    def wait(self, ids: Sequence[str], timeout: float) -> dict[str, StoredResult]:
        return self.app.backend.wait(ids, timeout, self.app.clock.now)


class _EagerState(threading.local):
    def __init__(self) -> None:
        self.pending: deque[tuple[str, bytes]] | None = None
        self.keys: set[str] = set()
        self.counters: dict[str, int] = {}


_eager_states: weakref.WeakKeyDictionary[Conveyor, _EagerState] = weakref.WeakKeyDictionary()


class EagerOps(Ops):
    """Eager mode: steps run in this process after the current one, nothing is stored."""

    def __init__(self, app: Conveyor) -> None:
        super().__init__(app)
        self.state = _eager_states.setdefault(app, _EagerState())

    def enqueue(self, messages: Sequence[Message]) -> None:
        for m in messages:
            if m.dedup_key is not None:
                if m.dedup_key in self.state.keys:
                    continue
                self.state.keys.add(m.dedup_key)
            if self.state.pending is None:  # not inside run_eager: run it now
                run_eager(self.app, m.body, m.id)
            else:
                self.state.pending.append((m.id, m.body))

    def incr(self, key: str, by: int, ttl: float) -> int:
        value = self.state.counters.get(key, 0) + by
        self.state.counters[key] = value
        return value

    def wait(self, ids: Sequence[str], timeout: float) -> dict[str, StoredResult]:
        known = self.app._eager_outcomes
        return {i: known[i] for i in ids if i in known}


def ops_for(app: Conveyor) -> Ops:
    return EagerOps(app) if app.eager else Ops(app)


def run_eager(app: Conveyor, body: bytes, task_id: str) -> StoredResult:
    """Eager mode: run a task inline, then every workflow step it led to, in order."""
    state = _eager_states.setdefault(app, _EagerState())
    outer, state.pending = state.pending, deque()
    try:
        outcome = run_inline(app, body, task_id)
        app._eager_outcomes[task_id] = outcome
        while state.pending:
            step_id, step_body = state.pending.popleft()
            app._eager_outcomes[step_id] = run_inline(app, step_body, step_id)
    finally:
        state.pending = outer
    return outcome


# --- the executor's hooks ---------------------------------------------------------------------
def prepare_step(ex: Executor, d: Delivery, env: Envelope) -> Prepared | Finished:
    """Before a workflow step runs: record an earlier step's failure instead of running, or
    (a chord callback) wait for the members and take their values."""
    app = ex.app
    flow = env.flow or {}
    ops = ops_for(app)
    try:
        if "fail" in flow:
            return record_failure(app, d, env, _as_payload(flow["fail"], env.task), ops)
        if "join" in flow:
            joined = join(app, d, env, flow["join"], ops)
            if isinstance(joined, Finished):
                return joined
            env = joined
        prepared = ex.prepare_envelope(d, env)
        if isinstance(prepared, Finished) and _final_failure(prepared.settlement):
            failed(app, env, _payload(app, prepared.settlement, env.task), ops, errbacks=True)
        return prepared
    except Exception as exc:
        return _run_again(app, d, exc)


def finish_step(ex: Executor, p: Prepared, fin: Finished) -> Finished:
    """After a workflow step ran: enqueue what its outcome calls for, before it settles."""
    s = fin.settlement
    if isinstance(s, Release) or p.ctx.cancelled:  # not final (or settled by someone else)
        return fin
    app, env = ex.app, p.envelope
    ops = ops_for(app)
    try:
        if isinstance(s, Ack) and s.state == SUCCESS:
            try:
                succeeded(app, env, p.value, ops)
            except SerializationError as exc:
                msg = f"the value of {p.task.name} cannot be passed on: {exc}"
                fin = ex._dead(p.delivery, msg, "SerializationError", msg, p.task.name)
                failed(app, env, _payload(app, fin.settlement, env.task), ops, errbacks=True)
        else:
            failed(app, env, _payload(app, s, env.task), ops, errbacks=True)
    except Exception as exc:
        return _run_again(app, p.delivery, exc)
    return fin


def _run_again(app: Conveyor, d: Delivery, exc: Exception) -> Finished:
    """The backend refused what the workflow needs: give the step back (counted as a
    delivery, so a step that can never pass is dead-lettered after a few)."""
    if app.eager:
        raise exc
    log.warning("task %s: could not enqueue its workflow's next steps (%s: %s); it runs again",
                d.id, type(exc).__name__, exc)
    return Finished(Release(d.id, d.token, app.clock.now() + RUN_AGAIN_AFTER), "retry",
                    f"workflow steps not enqueued: {type(exc).__name__}: {exc}")


# --- outcomes ---------------------------------------------------------------------------------
def succeeded(app: Conveyor, env: Envelope, value: Any, ops: Ops) -> None:
    """Enqueue the next step of the chain (or its group), the links and, when this was the
    chord's last member, the chord's callback(s)."""
    flow = env.flow or {}
    messages: list[Message] = []
    then = flow.get("then")
    if then:
        nxt, rest = then[0], then[1:]
        if "group" in nxt:
            messages += [step_message(app, n, [value]) for n in nxt["group"]]
        else:
            messages.append(step_message(app, nxt, [value], then=rest))
    messages += [step_message(app, n, [value]) for n in flow.get("link", ())]
    membership = flow.get("chord")
    if membership is not None and chord_complete(app, membership, env.id, ops):
        messages += [step_message(app, n, []) for n in membership["cb"]]
    if messages:
        ops.enqueue(messages)


def failed(app: Conveyor, env: Envelope, payload: dict[str, Any], ops: Ops, *,
           errbacks: bool) -> None:
    """This step failed for good (or records an earlier failure): call the errbacks (only for
    the step that really failed), and record the failure for every step after it: the rest
    of the chain, the links and the chord's callback(s)."""
    flow = env.flow or {}
    messages: list[Message] = []
    if errbacks:
        errargs = [env.id, payload["exc_type"], payload["exc_message"]]
        messages += [step_message(app, n, errargs) for n in flow.get("link_error", ())]
    for n in flow.get("then", ()):
        messages += [marker_message(app, x, payload) for x in n.get("group", [n])]
    messages += [marker_message(app, n, payload) for n in flow.get("link", ())]
    membership = flow.get("chord")
    if membership is not None:
        messages += [marker_message(app, n, payload) for n in membership["cb"]]
    if messages:
        ops.enqueue(messages)


def record_failure(app: Conveyor, d: Delivery, env: Envelope, payload: dict[str, Any],
                   ops: Ops) -> Finished:
    """A step that does not run because an earlier one failed: its result is that failure
    (so `get()` raises the original error), passed on to the steps after it."""
    failed(app, env, payload, ops, errbacks=False)
    data = app.encode_failure(payload["exc_type"], payload["exc_message"],
                              payload["traceback"], payload["task"])
    return Finished(Ack(d.id, d.token, data, FAILURE, app.result_ttl),
                    f"({env.task}) not run: {payload['task']} failed with "
                    f"{payload['exc_type']}")


def chord_complete(app: Conveyor, membership: Node, member: str, ops: Ops) -> bool:
    """Count this member as finished; True when every member has been counted.

    Read this member's mark, then count, then set the mark. A member that runs again after
    its settle was lost finds its mark and is not counted twice. A crash between counting
    and marking (or two copies of one member running at once) can count a member twice, so
    the callback may be enqueued before the last member finished: the callback then waits
    for every member's result (`join`) before it runs. No order of crashes can leave the
    count short, because a member counts before it settles and reruns until it has.
    """
    chord_id, size = membership["id"], int(membership["n"])
    ttl = 2 * app.result_ttl  # the members' results must outlive the chord anyway
    mark = f"chord:{chord_id}:{member}"
    counter = f"chord:{chord_id}"
    if ops.incr(mark, 0, ttl) == 0:
        count = ops.incr(counter, 1, ttl)
        ops.incr(mark, 1, ttl)
    else:
        count = ops.incr(counter, 0, ttl)
    return count >= size


def join(app: Conveyor, d: Delivery, env: Envelope, spec: dict[str, Any],
         ops: Ops) -> Envelope | Finished:
    """A chord callback: once every member has a result, run with their values (in group
    order) first; a member that failed fails the callback with that member's error."""
    ids = [member_id(spec["id"], i) for i in range(int(spec["n"]))]
    found = ops.wait(ids, 0.0 if app.eager else JOIN_WAIT)
    missing = [i for i in ids if i not in found or found[i].state not in TERMINAL_STATES]
    now = app.clock.now()
    if missing:
        if app.eager or now - env.created_at > app.result_ttl:
            payload = {"exc_type": "ChordError", "traceback": "", "task": env.task,
                       "exc_message": f"{len(missing)} of {len(ids)} chord members have no "
                                      f"result (first: {missing[0]})"}
            return record_failure(app, d, env, payload, ops)
        wait = min(JOIN_POLL_MAX, max(0.05, (now - env.created_at) / 4))
        return Finished(Release(d.id, d.token, now + wait, attempted=False), "retry",
                        f"waiting for {len(missing)} of {len(ids)} chord members")
    values = []
    for i in ids:
        value = app.decode_outcome(found[i], None, propagate=False)
        if found[i].state != SUCCESS or isinstance(value, TaskFailed):
            error = value if isinstance(value, TaskFailed) else TaskFailed(i, "TaskFailed", "")
            return record_failure(app, d, env, {
                "exc_type": error.exc_type, "exc_message": error.exc_message,
                "traceback": error.traceback, "task": error.task_name}, ops)
        values.append(value)
    if spec.get("imm"):
        return env
    return replace(env, args=[values, *env.args])


# --- messages ---------------------------------------------------------------------------------
def step_message(app: Conveyor, node: Node, prepend: list[Any],
                 then: list[Node] | None = None) -> Message:
    """The message of a workflow step, with `prepend` before its args (unless immutable)."""
    now = app.clock.now()
    args = list(node["args"]) if node.get("imm") else [*prepend, *node["args"]]
    flow = node.get("flow")
    if then:
        flow = {**(flow or {}), "then": then}
    expires_at = node.get("expires_at")
    if expires_at is None and node.get("expires") is not None:
        expires_at = now + float(node["expires"])
    env = Envelope(node["id"], node["task"], args, dict(node.get("kwargs") or {}),
                   node["queue"], int(node.get("priority", 0)), now, expires_at,
                   node.get("retries"), flow, tracing.current_context())  # the step's run span
    ready_at = float(node["eta"]) if "eta" in node else now + float(node.get("countdown", 0.0))
    return Message(env.id, env.queue, app.codec.encode(env.to_dict()), env.priority, ready_at,
                   DEDUP_PREFIX + env.id, app.result_ttl)


def marker_message(app: Conveyor, node: Node, payload: dict[str, Any]) -> Message:
    """A step that will record `payload` as its failure instead of running (and pass it on
    to the steps after it)."""
    flow = {k: v for k, v in (node.get("flow") or {}).items() if k in ("then", "link", "chord")}
    flow["fail"] = payload
    now = app.clock.now()
    env = Envelope(node["id"], node["task"], [], {}, node["queue"],
                   int(node.get("priority", 0)), now, None, None, flow)
    return Message(env.id, env.queue, app.codec.encode(env.to_dict()), env.priority, now,
                   DEDUP_PREFIX + env.id, app.result_ttl)


def after_lost_step(app: Conveyor, s: Settlement, task: str) -> None:
    """A task the supervisor settles for good (its process died, or was killed at its time
    limit): the supervisor never holds bodies, so read the message back and, if it is a
    workflow step, fail the steps after it and call its errbacks, as `finish_step` does."""
    if not _final_failure(s):
        return
    record = app.backend.task_record(s.id, app.clock.now())
    if record is None or record.message is None:
        return
    try:
        env = Envelope.from_dict(app.codec.decode(record.message.body))
    except SerializationError:
        return
    fail_steps_after(app, env, s)


def fail_steps_after(app: Conveyor, env: Envelope, s: Settlement) -> None:
    """A step settled outside the executor (stopped at its time limit) failed for good: fail
    the steps after it and call its errbacks. Nothing for a plain task or a retry."""
    if env.flow is not None and _final_failure(s):
        failed(app, env, _payload(app, s, env.task), ops_for(app), errbacks=True)


# --- failure payloads -------------------------------------------------------------------------
def _final_failure(s: Settlement) -> bool:
    return isinstance(s, Bury) or (isinstance(s, Ack) and s.state != SUCCESS)


def _payload(app: Conveyor, s: Settlement, task: str) -> dict[str, Any]:
    """The failure a settlement records, as the plain dict the steps after it carry."""
    data = getattr(s, "data", None)
    decoded: Any = None
    if data is not None:
        try:
            decoded = app.codec.decode(data)
        except SerializationError:
            decoded = None
    if decoded is None and isinstance(s, Bury):
        decoded = {"exc_type": "TaskFailed", "exc_message": s.reason}
    return _as_payload(decoded, task)


def _as_payload(data: Any, task: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        data = {}
    return {"exc_type": str(data.get("exc_type") or "TaskFailed"),
            "exc_message": str(data.get("exc_message") or "an earlier step failed"),
            "traceback": str(data.get("traceback") or ""),
            "task": str(data.get("task") or task)}
