"""The ASGI app: routes, authentication and error handling. It reads only through the
Inspector and changes things only through the app's public API (`Task.apply_async`,
`Result.revoke`, `Inspector.retry_dead`); no backend internals here."""

from __future__ import annotations

import difflib
import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BackendUnavailable, ConfigError, SerializationError
from ..errors import TimeoutError as WaitTimeout
from ..inspect import (
    DeadTask,
    Inspector,
    Outcome,
    QueueInfo,
    TaskDetail,
    TaskRow,
    WorkerStatus,
)
from ..inspect_tasks import MAX_LIMIT as MAX_TASK_PAGE
from . import metrics, openapi, ui
from .hosts import host_name, is_local

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger("conveyor.dashboard")

DEFAULT_PORT = 8470
MAX_WAIT = 60.0  # longest long-poll, in seconds: `GET /api/tasks/{id}?wait=`
MAX_DEAD_PAGE = 1000
# Long-polls wait in threads of their own (at most this many at once), so they never take the
# threads the other requests need; past that, a long-poll answers at once with the state.
MAX_WAITING = 32
ENQUEUE_FIELDS = frozenset({"task", "args", "kwargs", "options"})
ENQUEUE_OPTIONS = frozenset({"countdown", "eta", "queue", "priority", "task_id"})


class ApiError(Exception):
    """An error for the client: its status and a message safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JSON(JSONResponse):
    """JSON that holds whatever a task returned (values JSON cannot hold become their repr)
    and stays strict JSON (no NaN)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=False, default=repr,
                          separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _error(status: int, message: str) -> JSON:
    return JSON({"error": message}, status_code=status)


class TokenAuth:
    """With a token, every request needs `Authorization: Bearer <token>` (compared in
    constant time) or the session cookie the login form sets; a browser opening a page
    without either is sent to the login form. Without one, only requests addressed to this
    machine by name (Host `127.0.0.1`, `localhost`, `[::1]`) are served: a web page cannot
    then reach the API by pointing a name of its own at 127.0.0.1 (DNS rebinding). Plain
    ASGI middleware, so long-polls are not buffered."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = None if token is None else f"Bearer {token}".encode()
        # a browser's login (ui.py): a session cookie derived from the token
        self.session = None if token is None else ui.session_value(token).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.expected is None:
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if is_local(host):
                await self.app(scope, receive, send)
            else:
                await _error(403, "without a token, the dashboard answers only requests to "
                                  "127.0.0.1 or localhost")(scope, receive, send)
            return
        given = headers.get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):
            session = (ui.cookie(headers, ui.SESSION_COOKIE) or "").encode()
            path = _local_path(scope)
            if (self.session is not None and hmac.compare_digest(session, self.session)
                    or ui.is_public(path)):
                await self.app(scope, receive, send)
                return
            if ui.wants_page(scope["method"], path, headers):
                await ui.login_redirect(str(scope.get("root_path", "")).rstrip("/"), path,
                                        scope.get("query_string", b""))(scope, receive, send)
                return
            response = _error(401, "missing or wrong token: send 'Authorization: Bearer "
                                   "<token>'")
            response.headers["WWW-Authenticate"] = 'Bearer realm="conveyor"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _local_path(scope: Scope) -> str:
    """The request's path below where the app is mounted."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", "")).rstrip("/")
    return path[len(root):] or "/" if root and path.startswith(root) else path


Handler = Callable[[Request], Awaitable[Response]]


def create_app(conveyor_app: Conveyor, token: str | None = None) -> Starlette:
    """The dashboard of `conveyor_app` as an ASGI app. With `token`, every request needs
    `Authorization: Bearer <token>`."""
    if token is not None and not token:
        raise ConfigError("the dashboard token must not be empty")
    api = _Api(conveyor_app)
    routes = [
        *ui.Ui(conveyor_app, api.inspector, token).routes(),  # the pages, login and /static
        Route("/metrics", _handle(api.metrics), methods=["GET"]),
        Route("/api/openapi.json", _handle(api.schema), methods=["GET"]),
        Route("/api/tasks", _handle(api.enqueue), methods=["POST"]),
        Route("/api/tasks", _handle(api.list_tasks), methods=["GET"]),
        Route("/api/tasks/{id}", _handle(api.task), methods=["GET"]),
        Route("/api/tasks/{id}/detail", _handle(api.task_detail), methods=["GET"]),
        Route("/api/tasks/{id}/revoke", _handle(api.revoke), methods=["POST"]),
        Route("/api/queues", _handle(api.queues), methods=["GET"]),
        Route("/api/workers", _handle(api.workers), methods=["GET"]),
        Route("/api/dead", _handle(api.dead), methods=["GET"]),
        Route("/api/dead/retry", _handle(api.retry_dead), methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(TokenAuth, token=token)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = {404: "no such endpoint", 405: f"method {request.method} not allowed here"}
    return _error(exc.status_code, text.get(exc.status_code, str(exc.detail)))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("dashboard: %s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error (details are in the server's log)")


def _handle(fn: Handler) -> Handler:
    """Turn the library's errors into JSON errors with messages safe to show."""

    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as exc:
            return _error(exc.status, exc.message)
        except (ConfigError, SerializationError) as exc:
            return _error(400, str(exc))
        except BackendUnavailable as exc:  # its message hides the URL's password
            return _error(503, f"backend unavailable: {exc}")

    return wrapper


class _Api:
    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.inspector = Inspector(app)
        self.waiting = anyio.CapacityLimiter(MAX_WAITING)

    # --- reading ----------------------------------------------------------------------
    async def queues(self, request: Request) -> Response:
        found = await run_in_threadpool(self.inspector.queues)
        return JSON({"queues": [_queue(q) for q in found]})

    async def workers(self, request: Request) -> Response:
        found = await run_in_threadpool(self.inspector.workers)
        return JSON({"workers": [_worker(w) for w in found]})

    async def dead(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 100, 1, MAX_DEAD_PAGE)
        offset = _int_param(request, "offset", 0, 0, None)

        def read() -> tuple[int, list[DeadTask]]:
            return self.inspector.dead_count(), self.inspector.dead_letters(limit, offset)

        count, found = await run_in_threadpool(read)
        return JSON({"count": count, "limit": limit, "offset": offset,
                     "dead": [_dead(d) for d in found]})

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["id"]
        wait = _float_param(request, "wait", 0.0, 0.0, MAX_WAIT)

        def read() -> Outcome:
            if wait > 0:
                try:
                    return self.inspector.outcome(task_id, wait=True, timeout=wait)
                except WaitTimeout:
                    pass
            return self.inspector.outcome(task_id)

        if wait > 0 and self.waiting.available_tokens >= 1:
            found = await anyio.to_thread.run_sync(read, limiter=self.waiting)
        else:
            found = await run_in_threadpool(self.inspector.outcome, task_id)
        return JSON(_outcome(found))

    async def list_tasks(self, request: Request) -> Response:
        limit = _int_param(request, "limit", 50, 1, MAX_TASK_PAGE)
        offset = _int_param(request, "offset", 0, 0, None)
        state, queue, name = (request.query_params.get(k) or None
                              for k in ("state", "queue", "name"))

        def read() -> list[TaskRow]:
            try:
                return self.inspector.find_tasks(state, queue, name, limit, offset)
            except ValueError as exc:  # its message names the parameter
                raise ApiError(400, str(exc)) from None

        found = await run_in_threadpool(read)
        return JSON({"state": state, "queue": queue, "name": name, "limit": limit,
                     "offset": offset, "tasks": [_task_row(t) for t in found]})

    async def task_detail(self, request: Request) -> Response:
        task_id = request.path_params["id"]
        found = await run_in_threadpool(self.inspector.task_detail, task_id)
        if found is None:
            raise ApiError(404, f"nothing is stored about task {task_id!r} (unknown, or its "
                                "result expired)")
        return JSON(_task_detail(found))

    async def schema(self, request: Request) -> Response:
        return JSON(openapi.SCHEMA)

    async def metrics(self, request: Request) -> Response:
        st = await run_in_threadpool(self.inspector.status)
        counters = await run_in_threadpool(self.inspector.counters)
        return Response(metrics.render(st, counters), media_type=metrics.CONTENT_TYPE)

    # --- changing (POST with a JSON body only) ------------------------------------------
    async def enqueue(self, request: Request) -> Response:
        body = await _json_body(request, required=True)
        unknown = sorted(set(body) - ENQUEUE_FIELDS)
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; expected task, args, "
                                "kwargs, options")
        name = body.get("task")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "'task' must be the name of a registered task")
        task = self.app.tasks.get(name)
        if task is None:
            raise ApiError(400, _unknown_task(name, list(self.app.tasks)))
        args = body.get("args", [])
        kwargs = body.get("kwargs", {})
        if not isinstance(args, list):
            raise ApiError(400, f"'args' must be an array, not {_json_type(args)}")
        if not isinstance(kwargs, dict):
            raise ApiError(400, f"'kwargs' must be an object, not {_json_type(kwargs)}")
        options = _options(body.get("options", {}))

        def send() -> str:
            try:
                return task.apply_async(args, kwargs, **options).id
            except TypeError as exc:  # the arguments do not fit the function's signature
                raise ApiError(400, str(exc)) from None

        task_id = await run_in_threadpool(send)
        return JSON({"id": task_id, "task": task.name}, status_code=201)

    async def revoke(self, request: Request) -> Response:
        task_id = request.path_params["id"]
        body = await _json_body(request, required=False)
        unknown = sorted(set(body) - {"terminate"})
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; expected terminate")
        terminate = body.get("terminate", False)
        if not isinstance(terminate, bool):
            raise ApiError(400, "'terminate' must be true or false")
        done = await run_in_threadpool(lambda: self.app.result(task_id).revoke(terminate))
        return JSON({"id": task_id, "revoked": done})

    async def retry_dead(self, request: Request) -> Response:
        body = await _json_body(request, required=True)
        unknown = sorted(set(body) - {"ids", "all"})
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; expected ids or all")
        ids, every = body.get("ids"), body.get("all", False)
        if not isinstance(every, bool):
            raise ApiError(400, "'all' must be true or false")
        if every == (ids is not None):
            raise ApiError(400, "give either 'ids' (an array of dead letter ids) or "
                                "'all': true")
        if ids is not None and (not isinstance(ids, list)
                                or not all(isinstance(i, str) for i in ids)):
            raise ApiError(400, "'ids' must be an array of strings")
        retried = await run_in_threadpool(self.inspector.retry_dead, None if every else ids)
        return JSON({"retried": retried})


# --- request parsing ---------------------------------------------------------------------
async def _json_body(request: Request, required: bool) -> dict[str, Any]:
    """The body as a JSON object. Requiring `Content-Type: application/json` on every change
    is the CSRF protection: a page on another site cannot send it without a CORS preflight,
    which this server never answers."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        if not raw and not required and not ctype:
            return {}
        raise ApiError(415, "send the body as JSON with 'Content-Type: application/json'")
    if not raw.strip():
        if required:
            raise ApiError(400, "the body is empty: send a JSON object")
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object, not {_json_type(value)}")
    return value


def _options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, f"'options' must be an object, not {_json_type(value)}")
    unknown = sorted(set(value) - ENQUEUE_OPTIONS)
    if unknown:
        raise ApiError(400, f"unknown option(s) {', '.join(unknown)}; expected "
                            f"{', '.join(sorted(ENQUEUE_OPTIONS))}")
    out = {k: v for k, v in value.items() if v is not None}
    if "countdown" in out:
        c = out["countdown"]
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0 <= c < math.inf:
            raise ApiError(400, "'countdown' must be a number of seconds >= 0")
    if "eta" in out:
        out["eta"] = _eta(out["eta"])
    return out


def _eta(value: Any) -> datetime:
    """An ISO 8601 time with a timezone, or Unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, ValueError, OSError):
            raise ApiError(400, f"'eta' {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ApiError(400, f"'eta' {value!r} is not an ISO 8601 time") from None
        if when.tzinfo is None:
            raise ApiError(400, "'eta' needs a timezone, e.g. '2030-01-01T12:00:00Z'")
        return when
    raise ApiError(400, "'eta' must be an ISO 8601 time with a timezone or Unix seconds")


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"'{name}' must be a whole number") from None
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ApiError(400, f"'{name}' must be {bound}")
    return value


def _float_param(request: Request, name: str, default: float, low: float,
                 high: float) -> float:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"'{name}' must be a number of seconds") from None
    if not low <= value <= high:  # also refuses NaN
        raise ApiError(400, f"'{name}' must be between {low:g} and {high:g} seconds")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _unknown_task(name: str, known: list[str]) -> str:
    text = f"unknown task {name!r}"
    close = ([k for k in known if k.endswith("." + name)]
             or difflib.get_close_matches(name, known))
    if close:
        return f"{text}; did you mean {', '.join(repr(c) for c in close[:3])}?"
    if not known:
        return f"{text}: the app has no tasks registered"
    return text


# --- responses ---------------------------------------------------------------------------
def _queue(q: QueueInfo) -> dict[str, Any]:
    return {"name": q.name, "ready": q.ready, "scheduled": q.scheduled, "running": q.running}


def _worker(w: WorkerStatus) -> dict[str, Any]:
    started = w.info.get("started_at")
    return {"id": w.id, "node": w.node, "pid": w.pid, "pool": w.pool,
            "concurrency": w.concurrency, "queues": w.queues, "last_seen": w.last_seen,
            "age": w.age,
            "started_at": started if isinstance(started, int | float) else None}


def _dead(d: DeadTask) -> dict[str, Any]:
    return {"id": d.id, "queue": d.queue, "task": d.task, "args": d.args,
            "kwargs": d.kwargs, "reason": d.reason, "died_at": d.died_at,
            "attempts": d.attempts, "decode_error": d.decode_error}


def _task_row(t: TaskRow) -> dict[str, Any]:
    return {"id": t.id, "task": t.task, "state": t.state, "queue": t.queue,
            "attempts": t.attempts, "priority": t.priority, "args": t.args,
            "kwargs": t.kwargs, "enqueued_at": t.enqueued_at, "ready_at": t.ready_at,
            "finished_at": t.finished_at, "worker": t.worker, "dead_reason": t.dead_reason,
            "decode_error": t.decode_error}


def _task_detail(d: TaskDetail) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id, "task": d.task, "state": d.state, "queue": d.queue,
        "priority": d.priority, "attempts": d.attempts, "args": d.args, "kwargs": d.kwargs,
        "enqueued_at": d.enqueued_at, "ready_at": d.ready_at, "started_at": d.started_at,
        "finished_at": d.finished_at, "lease_until": d.lease_until, "worker": d.worker,
        "expires_at": d.expires_at, "result_expires_at": d.result_expires_at,
        "progress": d.progress, "dead_reason": d.dead_reason,
        "decode_error": d.decode_error,
        "timeline": [{"time": e.time, "event": e.event} for e in d.timeline]}
    if d.error is not None:
        out["error"] = {"type": d.error.exc_type, "message": d.error.message,
                        "traceback": d.error.traceback or None}
    elif d.state == "SUCCESS":
        out["result"] = d.value
    return out


def _outcome(o: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"id": o.id, "state": o.state, "ready": o.ready}
    if o.error is not None:
        out["error"] = {"type": o.error.exc_type, "message": o.error.exc_message,
                        "traceback": o.error.traceback or None}
    elif o.ready:
        out["result"] = o.value
    if o.progress is not None:
        out["progress"] = o.progress
    return out
