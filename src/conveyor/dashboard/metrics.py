"""/metrics: what the Inspector knows, in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

from ..inspect import Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(st: Status) -> str:
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
    return "\n".join(lines) + "\n"
