"""/metrics: what the Inspector knows, in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

from ..inspect import Status
from ..stats import Counters

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(st: Status, counters: Counters | None = None) -> str:
    """The gauges of `st`, then (when given) the counters workers keep in the backend."""
    lines = [
        "# HELP conveyor_queue_tasks Messages in a queue, by state (ready, scheduled, running).",
        "# TYPE conveyor_queue_tasks gauge",
    ]
    for q in st.queues:
        name = _label(q.name)
        for state, n in (("ready", q.ready), ("scheduled", q.scheduled),
                         ("running", q.running)):
            lines.append(f'conveyor_queue_tasks{{queue="{name}",state="{state}"}} {n}')
    lines += [
        "# HELP conveyor_dead_letters Dead letters waiting to be retried or purged.",
        "# TYPE conveyor_dead_letters gauge",
        f"conveyor_dead_letters {st.dead}",
        "# HELP conveyor_workers Workers with a live heartbeat.",
        "# TYPE conveyor_workers gauge",
        f"conveyor_workers {len(st.workers)}",
        "# HELP conveyor_worker_heartbeat_age_seconds Seconds since each worker's last "
        "heartbeat.",
        "# TYPE conveyor_worker_heartbeat_age_seconds gauge",
    ]
    for w in st.workers:
        lines.append(f'conveyor_worker_heartbeat_age_seconds{{worker="{_label(w.id)}",'
                     f'node="{_label(w.node)}"}} {w.age:.3f}')
    if counters is not None:
        lines += _counters(counters)
    return "\n".join(lines) + "\n"


def _counters(c: Counters) -> list[str]:
    lines = [
        "# HELP conveyor_tasks_total Tasks settled by workers, by task and outcome.",
        "# TYPE conveyor_tasks_total counter",
    ]
    for t in c.tasks:
        task = _label(t.task)
        lines += [f'conveyor_tasks_total{{task="{task}",outcome="{o}"}} {n}'
                  for o, n in t.outcomes.items()]
    lines += [
        "# HELP conveyor_task_duration_seconds How long task runs took, by task.",
        "# TYPE conveyor_task_duration_seconds histogram",
    ]
    for t in c.tasks:
        task = _label(t.task)
        for le, n in t.buckets:
            bound = "+Inf" if le == float("inf") else repr(le)
            lines.append(f'conveyor_task_duration_seconds_bucket{{task="{task}",le="{bound}"}} '
                         f"{n}")
        lines += [f'conveyor_task_duration_seconds_sum{{task="{task}"}} {t.duration_sum:.6f}',
                  f'conveyor_task_duration_seconds_count{{task="{task}"}} {t.duration_count}']
    lines += [
        "# HELP conveyor_lease_losses_total Settles refused because another worker had taken "
        "over the lease (the outcome was discarded), by task.",
        "# TYPE conveyor_lease_losses_total counter",
    ]
    lines += [f'conveyor_lease_losses_total{{task="{_label(t.task)}"}} {t.lease_losses}'
              for t in c.tasks]
    lines += [
        "# HELP conveyor_retries_total Task runs released for another attempt, by task.",
        "# TYPE conveyor_retries_total counter",
    ]
    lines += [f'conveyor_retries_total{{task="{_label(t.task)}"}} {t.retries}'
              for t in c.tasks]
    return lines
