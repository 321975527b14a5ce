"""OpenTelemetry: the producer's trace context travels in the message and the worker's run
span is its child; without OpenTelemetry nothing changes and nothing is imported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from conveyor import Conveyor, chain  # noqa: E402
from conveyor.envelope import Envelope  # noqa: E402

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK, installed once per process (OpenTelemetry allows one global provider)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def app() -> Iterator[Conveyor]:
    a = Conveyor("memory://")

    @a.task(name="add")
    def add(x: int, y: int) -> int:
        with trace.get_tracer("test").start_as_current_span("inside"):
            return x + y

    @a.task(name="boom")
    def boom() -> None:
        raise ValueError("bad")

    yield a
    a.close()


def raw(app: Conveyor, task_id: str) -> dict[str, Any]:
    """The decoded body of the queued message `task_id` (left in the queue, uncounted)."""
    [d] = app.backend.claim(None, "peek", app.clock.now(), 30, 1)
    assert d.id == task_id
    app.backend.release(d.id, d.token, 0.0, app.clock.now(), attempted=False)
    body: dict[str, Any] = app.codec.decode(d.body)
    return body


def envelope(app: Conveyor, task_id: str) -> Envelope:
    return Envelope.from_dict(raw(app, task_id))


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_the_run_span_is_a_child_of_the_producer_span(
        app: Conveyor, spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request", kind=SpanKind.PRODUCER) as parent:
        r = app.tasks["add"].delay(2, 3)
    env = envelope(app, r.id)
    assert env.trace is not None and env.trace["traceparent"].startswith("00-")
    assert app.drain() == 1
    assert r.get(timeout=1) == 5

    [run] = named(spans, "conveyor.run add")
    producer = parent.get_span_context()
    assert run.kind is SpanKind.CONSUMER
    assert run.context.trace_id == producer.trace_id
    assert run.parent is not None and run.parent.span_id == producer.span_id
    assert dict(run.attributes or {}) == {
        "messaging.system": "conveyor", "messaging.operation": "process",
        "messaging.destination.name": "default", "messaging.message.id": r.id,
        "conveyor.task.id": r.id, "conveyor.task.name": "add",
        "conveyor.task.queue": "default", "conveyor.task.attempt": 1,
        "conveyor.task.outcome": "succeeded"}
    # The run span is current while the task runs: the task's own spans nest under it.
    [inside] = named(spans, "inside")
    assert inside.parent is not None and inside.parent.span_id == run.context.span_id


def test_a_failed_run_and_no_producer_span(app: Conveyor, spans: InMemorySpanExporter) -> None:
    r = app.tasks["boom"].delay()  # no span is current: nothing to carry
    assert "trace" not in raw(app, r.id)
    app.drain()
    [run] = named(spans, "conveyor.run boom")
    assert run.parent is None  # a root span of its own
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})["conveyor.task.outcome"] == "failed"


def test_workflow_steps_continue_the_trace(app: Conveyor, spans: InMemorySpanExporter) -> None:
    add = app.tasks["add"]
    with trace.get_tracer("test").start_as_current_span("request") as parent:
        r = chain(add.s(1, 2), add.s(10)).delay()
    app.drain()
    assert r.get(timeout=1) == 13
    first, second = sorted(named(spans, "conveyor.run add"), key=lambda s: s.start_time or 0)
    assert first.parent is not None
    assert first.parent.span_id == parent.get_span_context().span_id
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert second.context.trace_id == parent.get_span_context().trace_id


def test_trace_field_compatibility() -> None:
    base: dict[str, Any] = {"v": 1, "id": "i", "task": "t"}
    assert Envelope.from_dict(base).trace is None  # an older producer's message
    ctx = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "tracestate": "k=v"}
    env = Envelope.from_dict({**base, "trace": ctx})
    assert env.trace == ctx and env.to_dict()["v"] == 1  # no new format version
    assert Envelope.from_dict(env.to_dict()) == env
    for junk in ("x", 3, ["a"], {"traceparent": 5}, {"other": "x"}):
        assert Envelope.from_dict({**base, "trace": junk}).trace is None  # never fails a task


def test_without_opentelemetry_nothing_changes(tmp_path: Path) -> None:
    """In a process where opentelemetry cannot be imported: conveyor imports nothing of it,
    and enqueueing and running work as before."""
    code = textwrap.dedent('''
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed: importing it fails
        import conveyor, conveyor.worker.pools, conveyor.worker.aio, conveyor.tracing
        from conveyor import Conveyor
        app = Conveyor("memory://")
        add = app.task(name="add")(lambda a, b: a + b)
        r = add.delay(1, 2)
        [d] = app.backend.claim(None, "peek", app.clock.now(), 30, 1)
        assert "trace" not in app.codec.decode(d.body)
        app.backend.release(d.id, d.token, 0.0, app.clock.now(), attempted=False)
        assert app.drain() == 1 and r.get(timeout=1) == 3
        assert not [m for m in sys.modules if m.startswith("opentelemetry.")], sys.modules
        print("ok")
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_importing_conveyor_does_not_import_opentelemetry() -> None:
    code = ("import sys, conveyor, conveyor.worker.runner, conveyor.worker.aio; "
            "print([m for m in sys.modules if m.startswith('opentelemetry')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_the_api_without_a_tracer_provider_costs_no_span_for_untraced_messages() -> None:
    """redis-py 8 imports the OpenTelemetry API when it is installed: a process that set up
    no tracer provider must not pay for a no-op span per task, but still passes on a trace
    context a message carries."""
    code = ("import opentelemetry.trace\n"
            "from conveyor import tracing\n"
            "from conveyor.envelope import Envelope\n"
            "assert tracing.start_run(Envelope('a', 't'), 1) is None\n"
            "parent = {'traceparent': '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'}\n"
            "span = tracing.start_run(Envelope('b', 't', trace=parent), 1)\n"
            "assert span is not None\n"
            "assert tracing.current_context()['traceparent'].startswith("
            "'00-0af7651916cd43dd8448eb211c80319c-')\n"
            "span.end(None)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- real workers, across processes -----------------------------------------------------------
TASKS = '''
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from conveyor import Conveyor

SPANS = {spans!r}


class Lines(SpanExporter):
    def export(self, spans):
        with open(SPANS, "a") as f:
            for s in spans:
                f.write(json.dumps({{
                    "name": s.name, "trace": s.context.trace_id, "kind": s.kind.name,
                    "parent": s.parent.span_id if s.parent else None,
                    "attributes": dict(s.attributes)}}) + "\\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(Lines()))
trace.set_tracer_provider(provider)
app = Conveyor({url!r}, lease=5)


@app.task(name="add")
def add(x, y):
    return x + y


@app.task(name="aadd")
async def aadd(x, y):
    return x + y
'''


@pytest.mark.parametrize("pool", ["process", "async"])
def test_real_workers_continue_the_trace(tmp_path: Path, pool: str,
                                         spans: InMemorySpanExporter) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    out = tmp_path / "spans.jsonl"
    (tmp_path / "tasks.py").write_text(TASKS.format(url=url, spans=str(out)))
    app = Conveyor(url, lease=5)
    name = "aadd" if pool == "async" else "add"
    task = app.task(name=name)(lambda x, y: None)
    with trace.get_tracer("test").start_as_current_span("request") as parent:
        r = task.delay(2, 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    with open(tmp_path / "worker.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "tasks:app",
                                 "-c", "1", "--pool", pool], cwd=tmp_path, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)
    try:
        assert r.get(timeout=30) == 5
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        [line] = out.read_text().splitlines()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        app.close()
    run = json.loads(line)
    ctx = parent.get_span_context()
    assert run["name"] == f"conveyor.run {name}" and run["kind"] == "CONSUMER"
    assert run["trace"] == ctx.trace_id and run["parent"] == ctx.span_id
    assert run["attributes"]["conveyor.task.outcome"] == "succeeded"
    assert run["attributes"]["conveyor.task.id"] == r.id
