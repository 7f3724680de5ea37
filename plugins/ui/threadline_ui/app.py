"""The ASGI app: routes, the access-token and CSRF guards, and the error pages.

Every page is under ``/t/<tenant>/``; a server started for one tenant answers 404 for
any other (``--all-tenants`` lifts that). Writes are form POSTs carrying the server's
CSRF token, refused with ``--read-only``. Live conversations are server-sent events fed
by polling the store (:func:`events`), so a reply written by any process shows up.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from threadline.cli.app import one_line
from threadline.errors import ConflictError, NotFoundError, ThreadlineError, ValidationError
from threadline.ids import check_id
from threadline.models import Message
from threadline.runtime.waiting import is_waiting, list_waiting
from threadline.store import Store
from threadline_ui import approvals as answering
from threadline_ui import queries
from threadline_ui.config import UIConfig
from threadline_ui.rollback import perform_rollback, plan_rollback
from threadline_ui.usage import summarise

__all__ = ["TOKEN_COOKIE", "create_app"]

TOKEN_COOKIE = "threadline_ui_token"
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _age(value: timedelta) -> str:
    """A wait as ``42s``, ``17m``, ``3.5h`` or ``2.1d``."""
    seconds = max(value.total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("threadline_ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = _time
    env.filters["json"] = _json
    env.filters["number"] = _number
    env.filters["age"] = _age
    env.globals["urlencode"] = urlencode
    return env


class Guard:
    """ASGI middleware: the access token (when set) and the security headers.

    The token is accepted as ``?token=`` (then kept in an HttpOnly, SameSite=Strict cookie
    and removed from the address bar), as that cookie, or as ``Authorization: Bearer``.
    """

    def __init__(self, app: ASGIApp, config: UIConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        token = self.config.token
        if token is not None:
            request = Request(scope)
            given = request.query_params.get("token")
            if given is not None and secrets.compare_digest(given, token):
                query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + urlencode(query) if query else "")
                response: Response = RedirectResponse(target, status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
                await response(scope, receive, send_with_headers)
                return
            cookie = request.cookies.get(TOKEN_COOKIE, "")
            bearer = request.headers.get("authorization", "")
            bearer = bearer[7:] if bearer.lower().startswith("bearer ") else ""
            if not (secrets.compare_digest(cookie, token) or secrets.compare_digest(bearer, token)):
                response = PlainTextResponse(
                    "401: this server needs its access token: open the URL it printed "
                    "(?token=...) or send Authorization: Bearer <token>",
                    status_code=401,
                )
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def create_app(store: Store, config: UIConfig) -> ASGIApp:
    """The UI for ``store`` as an ASGI app (the store stays open; the caller closes it)."""
    env = _environment()

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(
            config=config,
            csrf=config.csrf_token,
            writable=not config.read_only,
            store_label=config.store_label,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def tenant_of(request: Request) -> str:
        raw = request.path_params["tenant"]
        try:
            tenant = check_id(raw, "tenant_id")
        except ValidationError:
            raise HTTPException(404, "no such tenant") from None
        if not config.allows(tenant):
            raise HTTPException(404, "no such tenant on this server")
        return tenant

    async def session_of(request: Request) -> tuple[str, Any]:
        tenant = tenant_of(request)
        try:
            sid = check_id(request.path_params["session"], "session_id")
        except ValidationError:
            raise HTTPException(404, "no such session") from None
        session = await store.get_session(tenant, sid)
        if session is None:
            raise HTTPException(404, f"no session {sid} for this tenant")
        return tenant, session

    def query_id(request: Request, name: str) -> str | None:
        value = request.query_params.get(name, "").strip()
        return check_id(value, name) if value else None

    def query_date(request: Request, name: str) -> date | None:
        value = request.query_params.get(name, "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None

    def query_int(request: Request, name: str, default: int | None = None) -> int | None:
        value = request.query_params.get(name, "").strip()
        if not value:
            return default
        if not value.isdigit() or len(value) > 18:
            raise ValidationError(f"{name} must be a whole number >= 0, got {value!r}")
        return int(value)

    async def form_of(request: Request) -> dict[str, str]:
        """The fields of a write: refused when read-only, cross-site or without CSRF token."""
        if config.read_only:
            raise HTTPException(403, "this server is read-only (started with --read-only)")
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            raise HTTPException(403, "cross-origin request refused")
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise HTTPException(403, "cross-site request refused")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        form = {k: v[0] for k, v in fields.items()}
        if not secrets.compare_digest(form.get("csrf", ""), config.csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")
        return form

    # -- pages ---------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        if config.tenant_id is not None:
            return RedirectResponse(f"/t/{config.tenant_id}/", status_code=303)
        tenants = await store.list_tenants()
        return render(request, "tenants.html", tenants=tenants, tenant=None)

    async def sessions(request: Request) -> Response:
        tenant = tenant_of(request)
        status = request.query_params.get("status", "").strip() or None
        if status is not None and status not in (*queries.MESSAGE_STATUSES, "empty"):
            raise ValidationError(f"status must be one of {', '.join(queries.MESSAGE_STATUSES)}")
        text = request.query_params.get("q", "").strip() or None
        flt = queries.SessionFilter(
            user_id=query_id(request, "user"),
            agent_id=query_id(request, "agent"),
            status=status,
            since=query_date(request, "since"),
            until=query_date(request, "until"),
            query=text,
        )
        page = query_int(request, "page", 0) or 0
        rows, more, scanned = await queries.find_sessions(store, tenant, flt, page)
        params = {k: v for k, v in request.query_params.items() if k != "page" and v}
        return render(
            request,
            "sessions.html",
            tenant=tenant,
            rows=rows,
            more=more,
            page=page,
            scanned=scanned,
            params=params,
            statuses=(*queries.MESSAGE_STATUSES, "empty"),
            searchable=callable(getattr(store, "search_messages", None)),
            scan_limit=queries.SCAN_SESSIONS,
        )

    async def conversation(request: Request) -> Response:
        tenant, session = await session_of(request)
        page = await queries.conversation_page(
            store,
            tenant,
            session.id,
            before=query_int(request, "before"),
            after=query_int(request, "after"),
        )
        return render(
            request,
            "conversation.html",
            tenant=tenant,
            session=session,
            waiting=await waiting_of(tenant, session.id),
            page=page,
            results=page.results,
            poll_ms=int(config.poll_interval * 1000),
        )

    async def events(request: Request) -> Response:
        """Server-sent events: each new or changed message, as HTML, polling the store."""
        tenant, session = await session_of(request)
        watermark = query_int(request, "after", 0) or 0
        template = env.get_template("message.html")

        async def stream() -> AsyncIterator[str]:
            mark = watermark
            sent: dict[str, tuple[Any, ...]] = {}
            callers: dict[str, Message] = {}
            results: dict[str, Message] = {}
            yield "retry: 2000\n\n"
            while True:
                batch = await store.get_messages(tenant, session.id, after_seq=mark, limit=200)
                final = True
                for m in batch:
                    if m.status == "streaming":
                        final = False
                    elif final and m.seq is not None:
                        mark = m.seq
                    key = (m.status, m.content, m.tool_calls, m.metadata)
                    if sent.get(m.id) == key:
                        continue
                    sent[m.id] = key
                    shown = m
                    if m.role == "tool" and m.tool_call_id in callers:
                        results[m.tool_call_id] = m
                        shown = callers[m.tool_call_id]
                    for call in m.tool_calls:
                        callers[call.id] = m
                    html = template.render(m=shown, results=results, live=True)
                    data = json.dumps({"id": shown.id, "seq": shown.seq, "html": html})
                    yield f"event: message\ndata: {data}\n\n"
                if len(sent) > 10_000:
                    sent.clear()
                if await request.is_disconnected():
                    return
                await asyncio.sleep(config.poll_interval)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def session_usage(request: Request) -> Response:
        tenant, session = await session_of(request)
        calls = await store.list_api_calls(tenant, session.id)
        return render(
            request,
            "usage.html",
            tenant=tenant,
            session=session,
            waiting=await waiting_of(tenant, session.id),
            usage=summarise(calls, config.prices),
            scanned=None,
        )

    async def tenant_usage(request: Request) -> Response:
        tenant = tenant_of(request)
        calls, scanned = await queries.tenant_api_calls(store, tenant)
        return render(
            request,
            "usage.html",
            tenant=tenant,
            session=None,
            usage=summarise(calls, config.prices),
            scanned=scanned,
        )

    async def checkpoints(request: Request) -> Response:
        tenant, session = await session_of(request)
        found = await store.list_checkpoints(tenant, session_id=session.id)
        return render(
            request,
            "checkpoints.html",
            tenant=tenant,
            session=session,
            waiting=await waiting_of(tenant, session.id),
            tree=queries.checkpoint_tree(found),
            message=request.query_params.get("done"),
        )

    async def checkpoint(request: Request) -> Response:
        tenant, session = await session_of(request)
        cid = check_id(request.path_params["checkpoint"], "checkpoint_id")
        found = await store.get_checkpoint(tenant, cid)
        if found is None or found.session_id != session.id:
            raise NotFoundError(f"no checkpoint {cid} in this session")
        plan = None
        if not found.tombstone and found.node_id is not None:
            plan = await plan_rollback(
                store, tenant, session.id, cid, config.inverses_for(found.agent_id)
            )
        return render(
            request,
            "checkpoint.html",
            tenant=tenant,
            session=session,
            waiting=await waiting_of(tenant, session.id),
            checkpoint=found,
            kind=queries.kind_of(found),
            plan=plan,
        )

    async def diff(request: Request) -> Response:
        tenant, session = await session_of(request)
        chosen = request.query_params.getlist("c")
        if len(chosen) != 2 or chosen[0] == chosen[1]:
            raise ValidationError("select exactly two checkpoints to compare")
        pair = []
        for raw in chosen:
            cid = check_id(raw, "checkpoint_id")
            found = await store.get_checkpoint(tenant, cid)
            if found is None or found.session_id != session.id:
                raise NotFoundError(f"no checkpoint {cid} in this session")
            pair.append(found)
        return render(
            request,
            "diff.html",
            tenant=tenant,
            session=session,
            waiting=await waiting_of(tenant, session.id),
            diff=queries.diff_checkpoints(pair[0], pair[1]),
        )

    async def rollback(request: Request) -> Response:
        form = await form_of(request)
        tenant, session = await session_of(request)
        cid = check_id(request.path_params["checkpoint"], "checkpoint_id")
        target = await store.get_checkpoint(tenant, cid)
        if target is None or target.session_id != session.id:
            raise NotFoundError(f"no checkpoint {cid} in this session")
        written, report = await perform_rollback(
            store,
            tenant,
            session.id,
            cid,
            config.inverses_for(target.agent_id),
            expected_latest=form.get("latest") or None,
        )
        done = (
            f"rolled back to version {target.version}: wrote version {written.version}; "
            f"{len(report.undone)} inverse(s) ran, {len(report.skipped)} call(s) not undone"
            + (f", {len(report.failures)} inverse(s) failed" if report.failures else "")
        )
        query = urlencode({"done": done})
        return RedirectResponse(f"/t/{tenant}/s/{session.id}/checkpoints?{query}", status_code=303)

    async def delete(request: Request) -> Response:
        await form_of(request)
        tenant, session = await session_of(request)
        await store.delete_session(tenant, session.id)
        return RedirectResponse(f"/t/{tenant}/", status_code=303)

    async def approvals(request: Request) -> Response:
        tenant = tenant_of(request)
        return await approvals_page(request, tenant)

    async def approvals_page(
        request: Request,
        tenant: str,
        status: int = 200,
        error: str | None = None,
        form: dict[str, str] | None = None,
    ) -> Response:
        runs = await list_waiting(store, tenant)
        return render(
            request,
            "approvals.html",
            status=status,
            tenant=tenant,
            runs=runs,
            done=request.query_params.get("done"),
            error=error,
            form=form or {},
            continues=bool(config.agents),
        )

    async def answer(
        request: Request,
        work: Callable[[str, dict[str, str]], Awaitable[answering.Answered]],
    ) -> Response:
        """Run one answer; a typed error re-renders the page with one message (and the
        text typed), a wrong or other tenant's id is a 404 page."""
        form = await form_of(request)
        tenant = tenant_of(request)
        try:
            answered = await work(tenant, form)
        except (ValidationError, ConflictError) as exc:
            status = 400 if isinstance(exc, ValidationError) else 409
            message = one_line(f"{type(exc).__name__}: {exc}")
            return await approvals_page(request, tenant, status, message, form)
        query = urlencode({"done": answered.message})
        return RedirectResponse(f"/t/{tenant}/approvals?{query}", status_code=303)

    async def resume(request: Request) -> Response:
        run_id = request.path_params["run"]
        return await answer(
            request,
            lambda tenant, form: answering.resume_run(
                store, tenant, run_id, form.get("value", "null"), config.agents
            ),
        )

    async def approve(request: Request) -> Response:
        run_id, call_id = request.path_params["run"], request.path_params["call"]
        return await answer(
            request,
            lambda tenant, form: answering.approve_call(
                store, tenant, run_id, call_id, form.get("arguments"), config.agents
            ),
        )

    async def reject(request: Request) -> Response:
        run_id, call_id = request.path_params["run"], request.path_params["call"]
        return await answer(
            request,
            lambda tenant, form: answering.reject_call(
                store, tenant, run_id, call_id, form.get("reason", ""), config.agents
            ),
        )

    async def waiting_of(tenant: str, session_id: str) -> bool:
        """Whether the session's run waits for a person (one indexed read: its latest
        checkpoint), for the link to the approvals page."""
        return is_waiting(await store.get_latest_checkpoint(tenant, session_id))

    # -- errors --------------------------------------------------------------------------

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render(
            request,
            "error.html",
            status=exc.status_code,
            status_code=exc.status_code,
            message=exc.detail,
            tenant=None,
        )

    async def threadline_error(request: Request, exc: Exception) -> Response:
        status = 500
        if isinstance(exc, ValidationError):
            status = 400
        elif isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, ConflictError):
            status = 409
        message = one_line(f"{type(exc).__name__}: {exc}")
        return render(
            request,
            "error.html",
            status=status,
            status_code=status,
            message=message,
            tenant=None,
        )

    static = resources.files("threadline_ui") / "static"
    base = "/t/{tenant}"
    session_base = base + "/s/{session}"
    routes = [
        Route("/", home),
        Route(base + "/", sessions),
        Route(base + "/usage", tenant_usage),
        Route(base + "/approvals", approvals),
        Route(base + "/approvals/{run}/resume", resume, methods=["POST"]),
        Route(base + "/approvals/{run}/calls/{call}/approve", approve, methods=["POST"]),
        Route(base + "/approvals/{run}/calls/{call}/reject", reject, methods=["POST"]),
        Route(session_base, conversation),
        Route(session_base + "/events", events),
        Route(session_base + "/usage", session_usage),
        Route(session_base + "/delete", delete, methods=["POST"]),
        Route(session_base + "/checkpoints", checkpoints),
        Route(session_base + "/checkpoints/diff", diff),
        Route(session_base + "/checkpoints/{checkpoint}", checkpoint),
        Route(session_base + "/checkpoints/{checkpoint}/rollback", rollback, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        ThreadlineError: threadline_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    return Guard(app, config)
