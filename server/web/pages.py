"""The dashboard pages (Jinja2 templates in ``server/templates``, static files in ``server/static``), login and
logout, and Prometheus ``/metrics``.

- ``GET /`` — the dashboard (a login page first when the asker is nobody): live power from the stream, today /
  month / year, history with zoom, events, capture health, the latest photo with its boxes, the review queue.
- ``GET /login``, ``POST /login`` (form or JSON ``{"user", "password"}``) → session cookie; ``POST /logout``.
- ``GET /meters/{id}/invoice?period=2026-11`` — the invoice of one billing period (``YYYY-MM`` or
  ``YYYY-MM-DD``; default the current month in the meter's time zone): lines, boundary readings, payment QR.
- ``GET /api/session`` — who is logged in, their meters and the CSRF token the page sends with writes.
- ``GET /metrics`` — Prometheus text: readings stored, photos by outcome, unreadable share, review queue, last
  reading age per meter. Readable like the API (token, login, or an open network).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from smartmeter import __version__
from smartmeter.errors import ConfigError, InputError
from smartmeter.server import auth, photos_repo, readings_repo, review_repo
from smartmeter.server.auth import SESSION_COOKIE, Unauthorized
from smartmeter.server.cli_invoice import render_html
from smartmeter.server.database import Database, now_ms, to_ms
from smartmeter.server.invoice import PERIOD, invoice_for, previous_period
from smartmeter.server.payloads import check_meter_id, decode_json
from smartmeter.server.web.context import BadParameter, Web, known_meter, read_body

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Environment(loader=FileSystemLoader(ROOT / "templates"), autoescape=select_autoescape(["html"]))
UNREADABLE = ("failed", "rejected")
_LOGIN_SCHEMA = {"type": "object", "required": ["user", "password"], "properties": {
    "user": {"type": "string", "description": "A name added by smartmeter user add."},
    "password": {"type": "string"}}}


class NoTariff(InputError):
    """An invoice asked for while the settings price nothing (billing.tariffs is empty)."""

    http_status = 409


def metrics_text(db: Database) -> str:
    """The Prometheus exposition of the database's state."""
    lines: list[str] = []

    def family(name: str, kind: str, text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])
        for labels, value in samples:
            shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{shown}}} {value:g}" if shown else f"{name} {value:g}")

    counts = readings_repo.counts_by_meter(db)
    family("smartmeter_readings_stored", "gauge", "Current readings stored per meter.",
           [({"meter": m}, n) for m, n in sorted(counts.items())])
    photos = photos_repo.status_counts(db)
    family("smartmeter_photos_processed", "gauge", "Photos the worker has seen, per meter and outcome.",
           [({"meter": m, "status": s}, n) for (m, s), n in sorted(photos.items())])
    per_meter: dict[str, list[int]] = {}
    for (m, s), n in photos.items():
        tot = per_meter.setdefault(m, [0, 0])
        tot[0] += n
        tot[1] += n if s in UNREADABLE else 0
    family("smartmeter_photos_unreadable_ratio", "gauge", "Share of a meter's photos that failed or were rejected.",
           [({"meter": m}, bad / tot) for m, (tot, bad) in sorted(per_meter.items()) if tot])
    family("smartmeter_review_queue_open", "gauge", "Photos waiting for a person's review.",
           [({}, review_repo.count_open(db))])
    now = now_ms()
    ages = []
    for m in db.meters():
        r = db.last_reading(m)
        if r is not None:
            ages.append(({"meter": m}, (now - to_ms(r.timestamp)) / 1000))
    family("smartmeter_last_reading_age_seconds", "gauge", "Seconds since the meter's latest stored reading.", ages)
    return "\n".join(lines) + "\n"


def add_pages(app: FastAPI, web: Web) -> None:
    cfg = web.settings.auth
    throttle = auth.LoginThrottle()
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")

    def page(name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(TEMPLATES.get_template(name).render(version=__version__, **context),
                            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    from smartmeter.server.web.setup import add_setup_routes

    add_setup_routes(app, web, page)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        p = await web.principal(request)
        if p is None:
            return RedirectResponse("/login", status_code=303)
        meters = p.visible(await web.run(lambda db: db.meters()))
        return page("dashboard.html", user=p.name, via=p.via, meters=meters, csrf=p.csrf or "",
                    can_write=p.can_write, intervals=web.settings.web.stream_intervals_s)

    @app.get("/meters/{meter_id}/invoice", response_class=HTMLResponse, include_in_schema=False)
    async def invoice_page(meter_id: str, request: Request, period: str | None = None) -> Response:
        p = await web.principal(request)
        if p is None:
            return RedirectResponse("/login", status_code=303)
        check_meter_id(meter_id)
        p.check_meter(meter_id)
        zone = ZoneInfo(web.settings.meter(meter_id).timezone)
        period = (period or "").strip() or datetime.now(zone).strftime("%Y-%m")
        if not PERIOD.match(period):
            raise BadParameter(f"period: {period[:40]!r} is not a billing period", hint="use YYYY-MM or YYYY-MM-DD")

        def build(db: Database) -> str:
            known_meter(db, meter_id)
            try:
                inv = invoice_for(db, web.settings, meter_id, period)
            except ConfigError as exc:  # no tariff: the settings' problem, said plainly (not a 5xx)
                raise NoTariff(exc.message, hint=exc.hint) from exc
            except InputError as exc:
                raise BadParameter(f"period: {exc.message}", hint=exc.hint) from exc
            return render_html(inv, web.settings.billing)

        fragment = await web.run(build)
        return page("invoice.html", user=p.name, meter=meter_id, period=period, invoice=Markup(fragment),
                    previous=previous_period(period))

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(error: str | None = None) -> HTMLResponse:
        return page("login.html", error=error)

    @app.post("/login", openapi_extra={"requestBody": {"required": True, "content": {
        m: {"schema": _LOGIN_SCHEMA} for m in ("application/json", "application/x-www-form-urlencoded")}}})
    async def login(request: Request) -> Response:
        """Log in with ``user`` and ``password`` (form or JSON): sets the session cookie."""
        raw = await read_body(request)
        is_form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        if is_form:
            fields = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        else:
            data = decode_json(raw)
            if not isinstance(data, dict):
                raise InputError('body must be {"user": ..., "password": ...}')
            fields = {k: v for k, v in data.items() if isinstance(v, str)}
        user, password = fields.get("user", "")[:200], fields.get("password", "")[:1000]
        client = request.client.host if request.client else "?"
        throttle.check(client, user)
        if not await web.run(lambda db: auth.verify(db, user, password)):
            throttle.failed(client, user)
            if is_form:
                return RedirectResponse("/login?error=wrong+user+or+password", status_code=303)
            raise Unauthorized("wrong user or password")
        token, csrf = await web.run(lambda db: auth.start_session(db, user, cfg.session_hours))
        resp: Response = RedirectResponse("/", status_code=303) if is_form else JSONResponse(
            {"user": user, "csrf": csrf})
        resp.set_cookie(SESSION_COOKIE, token, max_age=int(cfg.session_hours * 3600), httponly=True,
                        samesite="strict", secure=cfg.secure_cookie, path="/")
        return resp

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        """End the session (needs its CSRF token, in X-CSRF-Token or the form's csrf field)."""
        raw = await read_body(request)
        sent = request.headers.get(auth.CSRF_HEADER) or parse_qs(raw.decode("utf-8", "replace")).get(
            "csrf", [""])[0]
        p = auth.check_write(await web.principal(request), sent)
        token = request.cookies.get(SESSION_COOKIE, "")
        if p.via == "session":
            await web.run(lambda db: auth.end_session(db, token))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    @app.get("/api/session")
    async def session_info(request: Request) -> dict[str, Any]:
        """Who is asking: name, how (token, session, network), the meters (null = all), the CSRF token."""
        p = await web.reader(request)
        return {"user": p.name, "via": p.via, "can_write": p.can_write, "csrf": p.csrf,
                "meters": None if p.meters is None else sorted(p.meters)}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics (text exposition format 0.0.4)."""
        p = await web.reader(request)
        if p.meters is not None:
            raise auth.Forbidden("metrics cover every meter: they need the token or a login to all meters")
        return PlainTextResponse(await web.run(metrics_text), media_type="text/plain; version=0.0.4")
