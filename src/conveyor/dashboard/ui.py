"""The browser dashboard: the HTML pages (from `pages/`), their form actions, the login and
the static files, as Starlette routes that `web.create_app` adds beside the API.

Reading goes through the Inspector only; changes (revoke, retry or delete dead letters) are
HTML form POSTs, each checked for a CSRF token: an HMAC, under a key made when the app is
created, of a random value kept in an HttpOnly SameSite=Strict cookie. A page on another site
can neither read that cookie nor compute the token, and cannot frame these pages (CSP
frame-ancestors). With a dashboard token, the login form trades the token for a session cookie
that `web.TokenAuth` accepts beside the Bearer header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import BackendUnavailable
from ..inspect import Inspector
from .pages import assets, dead, html, login, overview, periodic, tasks

if TYPE_CHECKING:
    from ..app import Conveyor

SESSION_COOKIE = "conveyor_session"
CSRF_COOKIE = "conveyor_csrf"
PUBLIC = ("/login", "/static/dashboard.css", "/static/dashboard.js")  # served without a login
PAGES = ("/", "/tasks", "/dead", "/periodic")  # and /tasks/{id}: where a browser may land
MAX_FORM = 1 << 20  # bytes
TASKS_PAGE = 50
DEAD_PAGE = 100
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self' "
                                "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
DONE = {  # ?done= after a form action: fixed texts, so a link cannot put words on the page
    "retried": "Put {n} dead letter(s) back in their queue.",
    "deleted": "Deleted {n} dead letter(s).",
    "none": "Nothing was selected.",
    "revoked": "Revoked: it will not run (a running task stops if asked to).",
    "not-revoked": "Too late to revoke: the task had already finished.",
}


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def session_value(token: str) -> str:
    """The session cookie's value for `token`: derived from it, so the browser never stores
    the token itself and a restart of the server keeps people logged in."""
    return hmac.new(token.encode(), b"conveyor dashboard session v1", hashlib.sha256).hexdigest()


def cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(b"cookie", b"").decode("latin-1")
    for part in raw.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def wants_page(method: str, path: str, headers: dict[bytes, bytes]) -> bool:
    """A browser navigating to a page (not a script or API client): gets a login form or an
    HTML error rather than JSON."""
    accept = headers.get(b"accept", b"").decode("latin-1")
    return (method in ("GET", "HEAD") and "text/html" in accept
            and (path in PAGES or path.startswith("/tasks/")))


def is_public(path: str) -> bool:
    return path in PUBLIC


def login_redirect(root: str, path: str, query_string: bytes) -> RedirectResponse:
    target = path + ("?" + query_string.decode("latin-1") if query_string else "")
    return RedirectResponse(f"{root}/login?next={quote(target, safe='')}", status_code=303)


def _safe_next(value: str) -> str:
    """Only a path on this server (never `//evil.example` or `https://...`)."""
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return "/" if parts.scheme or parts.netloc else value


Handler = Callable[[Request], Awaitable[Response]]
R = TypeVar("R", bound=Response)


class Ui:
    """The pages of one dashboard app; `token` None means no login."""

    def __init__(self, app: Conveyor, inspector: Inspector, token: str | None) -> None:
        self.app = app
        self.inspector = inspector
        self.token = token
        self.csrf_key = secrets.token_bytes(32)

    def routes(self) -> list[Route]:
        g, p = ["GET"], ["POST"]
        return [
            Route("/", self._guard(self.overview), methods=g),
            Route("/tasks", self._guard(self.tasks), methods=g),
            Route("/tasks/{id:path}/revoke", self._guard(self.revoke), methods=p),
            Route("/tasks/{id:path}", self._guard(self.task), methods=g),
            Route("/dead", self._guard(self.dead), methods=g),
            Route("/dead/retry", self._guard(self.dead_retry), methods=p),
            Route("/dead/delete", self._guard(self.dead_delete), methods=p),
            Route("/periodic", self._guard(self.periodic), methods=g),
            Route("/login", self.login_form, methods=g),
            Route("/login", self.login, methods=p),
            Route("/logout", self._guard(self.logout), methods=p),
            Route("/static/dashboard.css", self.css, methods=g),
            Route("/static/dashboard.js", self.js, methods=g),
        ]

    # --- plumbing ---------------------------------------------------------------------------
    def _guard(self, fn: Handler) -> Handler:
        """Errors as a page for a browser, as JSON for anything else; never with secrets."""

        async def wrapper(request: Request) -> Response:
            try:
                return await fn(request)
            except FormError as exc:
                return self._error(request, exc.status, exc.message)
            except BackendUnavailable as exc:  # its message hides the URL's password
                return self._error(request, 503, f"backend unavailable: {exc}")

        return wrapper

    def _error(self, request: Request, status: int, message: str) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return _secure(HTMLResponse(login.error_page(_base(request), status, message),
                                        status_code=status))
        return JSONResponse({"error": message}, status_code=status)

    def _csrf(self, request: Request) -> tuple[str, str | None]:
        """(the token for forms, a new cookie value to set or None)."""
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = None
        if not nonce or len(nonce) != 43:
            nonce = fresh = secrets.token_urlsafe(32)
        return self._sign(nonce), fresh

    def _sign(self, nonce: str) -> str:
        return hmac.new(self.csrf_key, nonce.encode(), hashlib.sha256).hexdigest()

    def _page(self, request: Request, title: str, active: str, live: str, body: str = "",
              status: int = 200, csrf: tuple[str, str | None] | None = None) -> Response:
        """The full page, or only its live region when the script asks (`partial=1`)."""
        token, fresh = csrf or self._csrf(request)
        if request.query_params.get("partial") == "1":
            response: Response = HTMLResponse(live, status_code=status)
        else:
            response = HTMLResponse(html.layout(
                base=_base(request), title=title, active=active, backend=self.app.safe_url,
                body=body, live=live, csrf=token, logout=self.token is not None),
                status_code=status)
        if fresh is not None:
            response.set_cookie(CSRF_COOKIE, fresh, path=_base(request) or "/", httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
        return _secure(response)

    async def _form(self, request: Request, csrf: bool = True) -> dict[str, list[str]]:
        """The form's fields, after checking where it came from and its CSRF token."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise FormError(403, "refused: this form was sent from another site")
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise FormError(403, "refused: this form was sent from another site")
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise FormError(415, "send the form as application/x-www-form-urlencoded")
        raw = await request.body()
        if len(raw) > MAX_FORM:
            raise FormError(413, "the form is too large")
        fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        if csrf:
            nonce = request.cookies.get(CSRF_COOKIE, "")
            given = (fields.get("csrf") or [""])[0]
            if not nonce or not hmac.compare_digest(given, self._sign(nonce)):
                raise FormError(403, "this page is out of date (or the form came from "
                                     "elsewhere): reload it and try again")
        return fields

    def _notice(self, request: Request) -> str:
        text = DONE.get(request.query_params.get("done", ""))
        if text is None:
            return ""
        try:
            n = max(0, int(request.query_params.get("n", "0")))
        except ValueError:
            n = 0
        return html.notice(text.format(n=n))

    # --- pages ------------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        def read() -> str:
            st = self.inspector.status()
            minutes = self.inspector.activity(60)
            return overview.render(_base(request), st, minutes)

        return self._page(request, "Overview", "overview", await run_in_threadpool(read))

    async def tasks(self, request: Request) -> Response:
        q = request.query_params
        base = _base(request)
        wanted = q.get("id", "").strip()
        if wanted:
            return RedirectResponse(f"{base}/tasks/{html.path_part(wanted)}", status_code=303)
        state, queue, name = q.get("state", ""), q.get("queue", ""), q.get("name", "").strip()
        offset = _int(q.get("offset"), 0)

        def read() -> tuple[str, list[str], list[str]]:
            error = None
            rows = []
            try:
                rows = self.inspector.find_tasks(state or None, queue or None, name or None,
                                                 TASKS_PAGE, offset)
            except ValueError as exc:
                error = str(exc)
            params = {"state": state, "queue": queue, "name": name}
            live = tasks.listing(base, rows, TASKS_PAGE, offset, params, error, time.time())
            return (live, [x.name for x in self.inspector.queues()],
                    [t.name for t in self.inspector.tasks()])

        live, queues, names = await run_in_threadpool(read)
        body = tasks.filters(base, state, queue, name, queues, names)
        return self._page(request, "Tasks", "tasks", live, body)

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["id"]
        base = _base(request)
        found = await run_in_threadpool(self.inspector.task_detail, task_id)
        csrf = self._csrf(request)
        title = f"Task {task_id}"
        if found is None:
            return self._page(request, title, "tasks", tasks.missing(base, task_id),
                              status=404, csrf=csrf)
        live = tasks.detail(base, found, csrf[0], time.time())
        return self._page(request, title, "tasks", live, self._notice(request), csrf=csrf)

    async def dead(self, request: Request) -> Response:
        offset = _int(request.query_params.get("offset"), 0)
        base = _base(request)

        def read() -> str:
            count = self.inspector.dead_count()
            rows = self.inspector.dead_letters(DEAD_PAGE, offset)
            return dead.render(base, count, rows, DEAD_PAGE, offset)

        live = await run_in_threadpool(read)
        csrf = self._csrf(request)
        body = self._notice(request) + dead.actions(base, csrf[0])
        return self._page(request, "Dead letters", "dead", live, body, csrf=csrf)

    async def periodic(self, request: Request) -> Response:
        rows = await run_in_threadpool(self.inspector.periodic)
        return self._page(request, "Periodic tasks", "periodic",
                          periodic.render(_base(request), rows))

    # --- actions (form POSTs) -----------------------------------------------------------------
    async def revoke(self, request: Request) -> Response:
        fields = await self._form(request)
        task_id = request.path_params["id"]
        terminate = (fields.get("terminate") or [""])[0] == "1"
        done = await run_in_threadpool(lambda: self.app.result(task_id).revoke(terminate))
        where = f"{_base(request)}/tasks/{html.path_part(task_id)}"
        return _see(f"{where}?done={'revoked' if done else 'not-revoked'}")

    async def dead_retry(self, request: Request) -> Response:
        return await self._dead_action(request, retry=True)

    async def dead_delete(self, request: Request) -> Response:
        return await self._dead_action(request, retry=False)

    async def _dead_action(self, request: Request, retry: bool) -> Response:
        fields = await self._form(request)
        every = (fields.get("all") or [""])[0] == "1"
        ids = [i for i in fields.get("ids", []) if i]
        where = f"{_base(request)}/dead"
        if (fields.get("back") or [""])[0] == "task" and len(ids) == 1 and not every:
            where = f"{_base(request)}/tasks/{html.path_part(ids[0])}"  # from a task's page
        if not every and not ids:
            return _see(f"{where}?done=none")
        chosen = None if every else ids
        if retry:
            n = len(await run_in_threadpool(self.inspector.retry_dead, chosen))
        else:
            n = await run_in_threadpool(self.inspector.purge_dead, chosen)
        return _see(f"{where}?done={'retried' if retry else 'deleted'}&n={n}")

    # --- login ------------------------------------------------------------------------------
    def _logged_in(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.cookies.get(SESSION_COOKIE, "")
        return hmac.compare_digest(given.encode(), session_value(self.token).encode())

    async def login_form(self, request: Request) -> Response:
        base = _base(request)
        nxt = _safe_next(request.query_params.get("next", "/"))
        if self._logged_in(request):
            return _see(base + nxt)
        return _secure(HTMLResponse(login.render(base, nxt)))

    async def login(self, request: Request) -> Response:
        base = _base(request)
        try:
            fields = await self._form(request, csrf=False)
        except FormError as exc:
            return self._error(request, exc.status, exc.message)
        nxt = _safe_next((fields.get("next") or ["/"])[0])
        if self.token is None:
            return _see(base + nxt)
        given = (fields.get("token") or [""])[0].strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _secure(HTMLResponse(login.render(base, nxt, "Wrong token."),
                                        status_code=401))
        response = _see(base + nxt)
        response.set_cookie(SESSION_COOKIE, session_value(self.token), path=base or "/",
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        await self._form(request)
        base = _base(request)
        response = _see(f"{base}/login")
        response.delete_cookie(SESSION_COOKIE, path=base or "/", httponly=True,
                               samesite="strict")
        return response

    # --- static -------------------------------------------------------------------------------
    async def css(self, request: Request) -> Response:
        return _static(assets.CSS, "text/css; charset=utf-8")

    async def js(self, request: Request) -> Response:
        return _static(assets.JS, "text/javascript; charset=utf-8")


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _int(text: str | None, default: int) -> int:
    try:
        return max(0, int(text)) if text is not None else default
    except ValueError:
        return default


def _see(url: str) -> RedirectResponse:
    """303: after a POST, the browser GETs the page (a reload does not repeat the action)."""
    return _secure(RedirectResponse(url, status_code=303))


def _secure(response: R) -> R:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _static(text: str, media_type: str) -> Response:
    response = Response(text, media_type=media_type)
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "public, max-age=86400"  # the URL carries a version
    return response
