"""Workflows: signatures, chains, groups and chords (API.md section 4).

No coordinator process runs a workflow. A workflow is compiled, when it is enqueued, into
plain data carried by its first messages (the envelope's `flow`, see docs/workflows.md):

- `then`: the rest of a chain, a flat list of steps (each a *node*: task name, pre-assigned
  id, args, kwargs, queue, priority, options). When a step succeeds, the worker enqueues the
  first node with the value prepended to its args and hands it the rest of the list. A list
  may end in a *group node* (`{"group": [nodes]}`): its members all get the value.
- `link` / `link_error`: nodes enqueued when this task succeeds (with its value) or fails for
  good (with `task_id, exc_type, exc_message`).
- `chord`: this task is member `i` of a chord (its id is `<chord id>-<i>`); when all `n`
  members finished, the worker that finished last enqueues the callback nodes, exactly once.
- `join` (on a chord callback): wait for the members, then prepend their values as a list.

Every node has its id assigned here, so the caller gets the `Result` of a workflow's last
step at once, and a step that fails can record a FAILURE for each step after it
(worker/flow.py does all of that in the worker).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import ConfigError
from .result import Result, ResultGroup

if TYPE_CHECKING:
    from .app import Conveyor
    from .task import Task

Node = dict[str, Any]  # one step as plain data (serializable into a message)
Root = tuple[Node, "Task[Any, Any]"]  # a node the producer enqueues, with its task
Tail: TypeAlias = "tuple[str, str] | list[Tail]"  # (id, task name) of the last step(s)

#: Options a signature keeps inside a workflow (apply_async's, as far as they make sense
#: for a step enqueued later by a worker: `countdown` and `expires` count from then).
STEP_OPTIONS = frozenset({"queue", "priority", "countdown", "eta", "expires", "retries",
                          "task_id", "link", "link_error"})
#: Options a signature accepts when it is applied on its own (`sig.apply_async()`).
SIGNATURE_OPTIONS = STEP_OPTIONS | {"unique_key", "unique_for"}

ERRBACK_ARGS = 3  # link_error callbacks get (task_id, exc_type, exc_message) first


def new_id() -> str:
    return os.urandom(16).hex()


def member_id(chord_id: str, index: int) -> str:
    """The id of a chord's member `index` (of its last step, when the member is a chain):
    derived, so each member's message needs only the chord id and size to find them all."""
    return f"{chord_id}-{index}"


class Canvas:
    """What can be enqueued as a workflow: Signature, Chain, Group, Chord. `a | b` chains."""

    def __or__(self, other: Canvas) -> Chain:
        if not isinstance(other, Canvas):
            return NotImplemented
        return Chain(self, other)

    @property
    def app(self) -> Conveyor:
        raise NotImplementedError

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Enqueue with these arguments given to the first step(s); see `apply_async`."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, *, link_error: Any = None,
                    connection: Any = None) -> Any:
        """Enqueue the first step(s) with `args` before their own and `kwargs` merged in.
        Returns the `Result` of the last step (a `ResultGroup` when it ends in a group).
        `link_error` signatures are called, with `(task_id, exc_type, exc_message)` first,
        when any step fails for good."""
        errbacks = link_nodes(link_error, ERRBACK_ARGS) if link_error is not None else []
        roots, tail = self.compile(None, None, errbacks)
        send_roots(self.app, roots, tuple(args or ()), dict(kwargs or {}), connection)
        return tail_result(self.app, tail)

    def compile(self, member: Node | None, tail_id: str | None,
                errbacks: list[Node]) -> tuple[list[Root], Tail]:
        """The nodes to enqueue first, and the id(s) of the last step(s). `member` and
        `tail_id`: chord membership and id for the last step; `errbacks` for every step."""
        return compile_stages(stages_of(self), member, tail_id, errbacks)


class Signature(Canvas):
    """One task call to make later: task, args, kwargs and options. `immutable` (from
    `task.si()`): it does not receive the previous step's value."""

    def __init__(self, task: Task[Any, Any], args: Sequence[Any] = (),
                 kwargs: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                 *, immutable: bool = False) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.immutable = immutable
        self.options: dict[str, Any] = _checked_options(task, options or {})

    @property
    def app(self) -> Conveyor:
        return self.task.app

    @property
    def name(self) -> str:
        return self.task.name

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}.{'si' if self.immutable else 's'}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Signature) and other.name == self.name
                and other.args == self.args and other.kwargs == self.kwargs
                and other.options == self.options and other.immutable == self.immutable)

    __hash__ = None  # type: ignore[assignment]  # mutable options: not hashable

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function here and now, like the task itself."""
        return self.task(*self._args(args), **{**self.kwargs, **kwargs})

    def set(self, **options: Any) -> Signature:
        """A copy with these `apply_async` options (queue, priority, countdown, eta, expires,
        retries, task_id, link, link_error)."""
        return Signature(self.task, self.args, self.kwargs, {**self.options, **options},
                         immutable=self.immutable)

    def _args(self, partial: Sequence[Any]) -> tuple[Any, ...]:
        return self.args if self.immutable else (*partial, *self.args)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """`task.apply_async` with `args` before this signature's own (unless immutable),
        `kwargs` merged in and `options` over the signature's."""
        return self.task.apply_async(self._args(args or ()), {**self.kwargs, **(kwargs or {})},
                                     **{**self.options, **options})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a message or a database); `Signature.from_dict` reads it back."""
        options = dict(self.options)
        for key in ("link", "link_error"):
            if key in options:
                options[key] = [_signature_dict(s) for s in _listed(options[key])]
        for key in ("eta", "expires"):
            if isinstance(options.get(key), datetime):
                options[key] = {"at": _timestamp(options[key])}
            elif isinstance(options.get(key), timedelta):
                options[key] = options[key].total_seconds()
        return {"task": self.name, "args": list(self.args), "kwargs": dict(self.kwargs),
                "options": options, "immutable": self.immutable}

    @classmethod
    def from_dict(cls, app: Conveyor, data: dict[str, Any]) -> Signature:
        task = app.tasks.get(data.get("task", ""))
        if task is None:
            raise ConfigError(f"signature of unknown task {data.get('task')!r}")
        options = dict(data.get("options") or {})
        for key in ("link", "link_error"):
            if key in options:
                options[key] = [cls.from_dict(app, d) for d in options[key]]
        for key in ("eta", "expires"):
            if isinstance(options.get(key), dict):
                options[key] = datetime.fromtimestamp(options[key]["at"], UTC)
        return cls(task, data.get("args", ()), data.get("kwargs"), options,
                   immutable=bool(data.get("immutable")))

    def node(self, tail_id: str | None, member: Node | None, errbacks: list[Node]) -> Node:
        """This call as a workflow step (plain data), with its id assigned."""
        opts, task = self.options, self.task
        for key in opts:
            if key not in STEP_OPTIONS:
                raise ConfigError(f"{self.name}: option {key}= cannot be used in a workflow")
        if member is not None and not task.options.store_result:
            raise ConfigError(f"{self.name} has store_result=False: a chord's callback reads "
                              "its members' results, so they must be stored")
        node: Node = {"task": self.name, "id": tail_id or opts.get("task_id") or new_id(),
                      "args": list(self.args), "kwargs": dict(self.kwargs),
                      "queue": opts.get("queue") or task.options.queue,
                      "priority": task.options.priority if opts.get("priority") is None
                      else opts["priority"]}
        if self.immutable:
            node["imm"] = True
        if opts.get("countdown") is not None:
            node["countdown"] = _seconds(opts["countdown"], "countdown")
        if opts.get("eta") is not None:
            node["eta"] = _timestamp(opts["eta"])
        expires = opts.get("expires")
        if isinstance(expires, datetime):
            node["expires_at"] = _timestamp(expires)
        elif expires is not None:
            node["expires"] = _seconds(expires, "expires")
        if opts.get("retries") is not None:
            node["retries"] = opts["retries"]
        flow: Node = {}
        if opts.get("link") is not None:
            flow["link"] = link_nodes(opts["link"], 1)
        errors = (link_nodes(opts["link_error"], ERRBACK_ARGS)
                  if opts.get("link_error") is not None else [])
        if errors or errbacks:
            flow["link_error"] = errors + errbacks
        if member is not None:
            flow["chord"] = member
        if flow:
            node["flow"] = flow
        return node


class Chain(Canvas):
    """Steps run one after the other, each receiving the previous one's value first."""

    def __init__(self, *tasks: Canvas) -> None:
        self.tasks: list[Canvas] = []
        for t in tasks:
            if not isinstance(t, Canvas):
                raise ConfigError(f"chain() takes signatures (task.s(...)), not {t!r}")
            self.tasks.extend(t.tasks if isinstance(t, Chain) else [t])
        if not self.tasks:
            raise ConfigError("chain() needs at least one signature")

    @property
    def app(self) -> Conveyor:
        return self.tasks[0].app

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)


class Group(Canvas):
    """Tasks that run in parallel; `delay()` returns a ResultGroup (values in group order)."""

    def __init__(self, *tasks: Canvas | Iterable[Canvas]) -> None:
        items: list[Any] = list(tasks)
        if len(items) == 1 and not isinstance(items[0], Canvas):
            items = list(items[0])  # group(generator) or group([...])
        for t in items:
            if not isinstance(t, Canvas):
                raise ConfigError(f"group() takes signatures (task.s(...)), not {t!r}")
        self.tasks: list[Canvas] = items

    @property
    def app(self) -> Conveyor:
        if not self.tasks:
            raise ConfigError("an empty group has nothing to run")
        return self.tasks[0].app

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    def __len__(self) -> int:
        return len(self.tasks)


class Chord(Canvas):
    """A group, then a callback that receives the list of the group's values (group order),
    enqueued exactly once when the last member finishes. A member that fails for good fails
    the chord: the callback is not run and its result is that member's error."""

    def __init__(self, header: Group | Iterable[Canvas], body: Canvas) -> None:
        self.header = header if isinstance(header, Group) else Group(list(header))
        if not isinstance(body, Canvas):
            raise ConfigError(f"chord()'s callback must be a signature, not {body!r}")
        self.body = body

    @property
    def app(self) -> Conveyor:
        return self.body.app

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: dict[str, Any] | None = None, *, link_error: Any = None,
                    connection: Any = None) -> Any:
        if not self.header.tasks:  # nothing to wait for: the callback gets [] at once
            return Chain(self.body).apply_async(([], *(args or ())), kwargs,
                                                link_error=link_error, connection=connection)
        return super().apply_async(args, kwargs, link_error=link_error, connection=connection)


def chain(*tasks: Canvas) -> Chain:
    """`chain(a.s(), b.s(), c.s())`: same as `a.s() | b.s() | c.s()`."""
    return Chain(*tasks)


def group(*tasks: Canvas | Iterable[Canvas]) -> Group:
    """`group(add.s(i, i) for i in range(10))` or `group(a.s(), b.s())`."""
    return Group(*tasks)


def chord(header: Group | Iterable[Canvas], body: Canvas) -> Chord:
    """`chord(group(...), total.s())`: `total` receives the list of the group's values."""
    return Chord(header, body)


# --- compiling ------------------------------------------------------------------------------
def stages_of(item: Canvas) -> list[Signature | Group]:
    """A flat list of steps: signatures and groups (a chord is its group, then its body)."""
    if isinstance(item, Signature | Group):
        return [item]
    if isinstance(item, Chain):
        return [s for t in item.tasks for s in stages_of(t)]
    if isinstance(item, Chord):
        return [item.header, *stages_of(item.body)]
    raise ConfigError(f"not a workflow: {item!r}")


def compile_stages(stages: list[Signature | Group], member: Node | None, tail_id: str | None,
                   errbacks: list[Node]) -> tuple[list[Root], Tail]:
    first_group = next((i for i, s in enumerate(stages) if isinstance(s, Group)), len(stages))
    head: list[Signature] = [s for s in stages[:first_group] if isinstance(s, Signature)]
    if first_group == len(stages):  # signatures only: a flat `then` list
        nodes = [s.node(tail_id if i == len(head) - 1 else None,
                        member if i == len(head) - 1 else None, errbacks)
                 for i, s in enumerate(head)]
        for s, n in zip(head[1:], nodes[1:], strict=True):
            check_node(s.task, n, 1)
        if len(nodes) > 1:
            nodes[0].setdefault("flow", {})["then"] = nodes[1:]
        return [(nodes[0], head[0].task)], (nodes[-1]["id"], head[-1].name)
    grp = stages[first_group]
    assert isinstance(grp, Group)
    rest = stages[first_group + 1:]
    members: list[Root] = []
    tail: Tail
    if rest:  # a group followed by more: a chord
        if not grp.tasks:
            raise ConfigError("a chord needs at least one task in its group")
        cid, size = new_id(), len(grp.tasks)
        callbacks, tail = compile_stages(rest, member, tail_id, errbacks)
        for node, task in callbacks:
            check_node(task, node, 1)
        membership: Node = {"id": cid, "n": size,
                            "cb": [_joining(node, cid, size) for node, _ in callbacks]}
        for i, item in enumerate(grp.tasks):
            members += item.compile(membership, member_id(cid, i), errbacks)[0]
    else:
        if member is not None or tail_id is not None:
            raise ConfigError("a group cannot be the last step of a chord's member: "
                              "give the chord's group its tasks directly")
        tails: list[Tail] = []
        for item in grp.tasks:
            roots, t = item.compile(None, None, errbacks)
            members += roots
            tails.append(t)
        tail = tails
    if not head:
        return members, tail
    for node, task in members:
        check_node(task, node, 1)
    nodes = [s.node(None, None, errbacks) for s in head]
    for s, n in zip(head[1:], nodes[1:], strict=True):
        check_node(s.task, n, 1)
    nodes[0].setdefault("flow", {})["then"] = [*nodes[1:], {"group": [n for n, _ in members]}]
    return [(nodes[0], head[0].task)], tail


def _joining(node: Node, chord_id: str, size: int) -> Node:
    """A chord callback node: it waits for the members, then gets their values (unless
    immutable)."""
    flow = dict(node.get("flow") or {})
    flow["join"] = {"id": chord_id, "n": size, "imm": bool(node.get("imm"))}
    return {**node, "flow": flow}


def check_node(task: Task[Any, Any], node: Node, prepended: int) -> None:
    """Fail at the call site when a step could never accept its arguments (with `prepended`
    values in front, which only the worker will know)."""
    args = node["args"] if node.get("imm") else [None] * prepended + node["args"]
    try:
        task.check_arguments(args, node["kwargs"])
    except TypeError as exc:
        raise TypeError(f"{task.name}: {exc}") from None


def link_nodes(items: Any, prepended: int) -> list[Node]:
    """`link=` / `link_error=` (a signature, a workflow or a list of them) as nodes."""
    out: list[Node] = []
    for item in _listed(items):
        if not isinstance(item, Canvas):
            raise ConfigError(f"link and link_error take signatures (task.s(...)), "
                              f"not {item!r}")
        for node, task in item.compile(None, None, [])[0]:
            check_node(task, node, prepended)
            out.append(node)
    return out


def link_flow(flow: Node | None, link: Any, link_error: Any) -> Node | None:
    """The flow of a task enqueued with `apply_async(link=..., link_error=...)`."""
    out = dict(flow or {})
    if link is not None:
        out["link"] = [*out.get("link", []), *link_nodes(link, 1)]
    if link_error is not None:
        out["link_error"] = [*out.get("link_error", []), *link_nodes(link_error, ERRBACK_ARGS)]
    return out or None


# --- enqueueing -------------------------------------------------------------------------------
def send_roots(app: Conveyor, roots: list[Root], args: tuple[Any, ...], kwargs: dict[str, Any],
               connection: Any) -> None:
    """Enqueue a workflow's first steps: one backend call, or through the enqueue
    middleware (and eager mode) one by one."""
    calls = [(task, node, node["args"] if node.get("imm") else [*args, *node["args"]],
              {**node["kwargs"], **kwargs}) for node, task in roots]
    if app.eager or app._through_middleware:
        for task, node, a, k in calls:
            options = root_options(node)
            if connection is not None:
                options["connection"] = connection
            app.send(task, tuple(a), k, **options)
        return
    from .backends.base import Message

    now = app.clock.now()
    messages = []
    for task, node, a, k in calls:
        options = root_options(node)
        env, body = app._envelope(task, tuple(a), k, now=now, task_id=node["id"],
                                  queue=node["queue"], priority=node["priority"],
                                  expires=options["expires"], retries=node.get("retries"),
                                  flow=node.get("flow"))
        ready_at = node["eta"] if "eta" in node else now + node.get("countdown", 0.0)
        messages.append(Message(env.id, env.queue, body, env.priority, ready_at))
    app._write(messages, now, connection)


def root_options(node: Node) -> dict[str, Any]:
    expires: Any = node.get("expires")
    if "expires_at" in node:
        expires = datetime.fromtimestamp(node["expires_at"], UTC)
    return {"task_id": node["id"], "queue": node["queue"], "priority": node["priority"],
            "countdown": node.get("countdown"), "retries": node.get("retries"),
            "eta": datetime.fromtimestamp(node["eta"], UTC) if "eta" in node else None,
            "expires": expires, "flow": node.get("flow")}


def tail_result(app: Conveyor, tail: Tail) -> Result | ResultGroup:
    if isinstance(tail, tuple):
        return _result(app, *tail)
    flat: list[Result] = []

    def walk(t: Tail) -> None:
        if isinstance(t, tuple):
            flat.append(_result(app, *t))
        else:
            for x in t:
                walk(x)
    walk(tail)
    return ResultGroup(app, flat)


def _result(app: Conveyor, id: str, name: str) -> Result:
    if app.eager:
        return app.result(id)  # its outcome, when the workflow ran inline
    return Result(app, id, name)


# --- helpers --------------------------------------------------------------------------------
def _checked_options(task: Task[Any, Any], options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - SIGNATURE_OPTIONS)
    if unknown:
        raise ConfigError(f"{task.name}: unknown signature option(s) {', '.join(unknown)}")
    return {k: v for k, v in options.items() if v is not None}


def _listed(items: Any) -> list[Any]:
    return list(items) if isinstance(items, list | tuple) else [items]


def _signature_dict(item: Any) -> dict[str, Any]:
    if not isinstance(item, Signature):
        raise ConfigError(f"only signatures convert to plain data here, not {item!r}")
    return item.to_dict()


def _seconds(value: Any, what: str) -> float:
    from .task import seconds

    return seconds(value, what) or 0.0


def _timestamp(when: Any) -> float:
    if isinstance(when, datetime):
        aware = when.astimezone() if when.tzinfo is None else when  # naive: local time
        return aware.astimezone(UTC).timestamp()
    if isinstance(when, int | float) and not isinstance(when, bool):
        return float(when)
    raise ConfigError(f"eta and expires take a datetime, not {when!r}")


__all__ = ["Canvas", "Chain", "Chord", "Group", "Signature", "chain", "chord", "group"]
