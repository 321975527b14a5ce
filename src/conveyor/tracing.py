"""OpenTelemetry: the producer's trace continues in the worker (docs/integrations.md).

When a process uses OpenTelemetry (its code imported `opentelemetry.trace`) and a span is
current at enqueue, the message carries that span's W3C trace context (`traceparent`,
`tracestate`: Envelope.trace). A worker that uses OpenTelemetry runs each task inside a span
"conveyor.run <task name>" of kind CONSUMER, a child of the producer's span (a root span when
the message carries none), current while the task runs, so the task's own spans and the
tasks it enqueues nest under it.

Nothing here imports OpenTelemetry unless the process already did: without it, the only cost
is one dictionary lookup per enqueue and per run. A process that imported OpenTelemetry but
set up no tracer provider (redis-py 8 imports it when it is installed) skips the spans of
messages that carry no trace context. The hooks are built in rather than a
middleware because an enqueue middleware cannot add fields to the message, and an execute
middleware sees neither the message's trace context nor the outcome (a retry, a failure),
which is decided after the task returns.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .envelope import Envelope
    from .worker.executor import Finished

OTEL = "opentelemetry.trace"  # present in sys.modules once the process uses OpenTelemetry
FIELDS = ("traceparent", "tracestate")
FAILED = frozenset({"failed", "retry", "rejected", "dead"})  # outcomes of a failed run


def in_use() -> bool:
    return OTEL in sys.modules


def current_context() -> dict[str, str] | None:
    """The W3C trace context of the current span, or None (no OpenTelemetry, no span)."""
    if OTEL not in sys.modules:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return {k: carrier[k] for k in FIELDS if k in carrier} or None


class RunSpan:
    """The span of one task run, current from `start` until `end`."""

    __slots__ = ("span", "token")

    def __init__(self, env: Envelope, attempt: int) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from . import __version__

        parent = TraceContextTextMapPropagator().extract(env.trace or {},
                                                         context=context.Context())
        tracer = trace.get_tracer("conveyor", __version__)
        self.span: Any = tracer.start_span(
            f"conveyor.run {env.task}", context=parent, kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "conveyor", "messaging.operation": "process",
                        "messaging.destination.name": env.queue,
                        "messaging.message.id": env.id, "conveyor.task.id": env.id,
                        "conveyor.task.name": env.task, "conveyor.task.queue": env.queue,
                        "conveyor.task.attempt": attempt})
        self.token: Any = context.attach(trace.set_span_in_context(self.span))

    def end(self, fin: Finished | None, exc: BaseException | None = None) -> None:
        """Record the outcome ("succeeded", "retry", "failed", ...) and end the span."""
        from opentelemetry import context, trace

        context.detach(self.token)
        span = self.span
        if fin is not None:
            span.set_attribute("conveyor.task.outcome", fin.outcome)
            if fin.outcome in FAILED:
                span.set_status(trace.Status(trace.StatusCode.ERROR, fin.detail or None))
        if exc is not None:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
        span.end()


def start_run(env: Envelope, attempt: int) -> RunSpan | None:
    """The span of a run about to start, or None when this process does not use
    OpenTelemetry."""
    if OTEL not in sys.modules:
        return None
    if env.trace is None and not _recording():
        return None  # nothing to continue and nothing to record: skip the no-op span
    return RunSpan(env, attempt)


def _recording() -> bool:
    """Whether a tracer provider was set up (an SDK): importing the API alone, as redis-py 8
    does when it is installed, leaves the default proxy that records nothing."""
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(),
                          (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans the SDK still buffers: a process-pool child leaves with os._exit,
    which skips the SDK's own flush at exit."""
    if OTEL not in sys.modules:
        return
    from opentelemetry import trace

    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if callable(force_flush):
        try:
            force_flush(timeout_millis)
        except Exception:  # an exporter's problem must not keep the child from exiting
            pass
