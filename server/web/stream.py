"""The live stream: ``GET /api/stream?meter=ID&interval=5[&start=ISO | &start_index=SECONDS]`` (Server-Sent Events).

Every ``interval`` seconds one ``power`` event: the mean power (W) and energy (kWh) of the meter over the interval
that just ended, from the stored register (``server.web.series``). Without ``start`` the stream is live: each
event covers the last ``interval`` seconds of the wall clock; when the readings of that interval have not arrived
yet (a meter reports once a minute) the power is the latest estimate and the event says ``"estimated": true``.
With ``start`` (an ISO time, or the original service's ``start_index`` = seconds since the meter's local
midnight today) the stream replays from then, one interval per ``interval`` seconds, as it happened, and goes live
when it reaches now. Each event's id is its interval's end (epoch ms): a client reconnecting with
``Last-Event-ID`` resumes after it. An idle stream sends a comment every ``web.heartbeat_s`` so proxies keep it.

``GET /api/stream/stats?meter=ID&window=1h[&interval=60]``: quick statistics of the interval powers over the last
``window`` (mean, std, quartiles, the 1.5 IQR bounds and the share of intervals outside them) for outlier checks.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import StreamingResponse

from smartmeter.errors import NotFoundError
from smartmeter.server.database import Database, from_ms, now_ms, to_ms
from smartmeter.server.payloads import check_meter_id
from smartmeter.server.web.context import BadParameter, Web, bound
from smartmeter.server.web.series import clean, load_curve, quick_stats
from smartmeter.types import format_timestamp

WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}


def add_stream_routes(app: FastAPI, web: Web) -> None:
    settings = web.settings
    allowed = sorted(set(settings.web.stream_intervals_s))
    gap_ms = int(settings.analysis.gap_s * 1000)

    def check_interval(text: str) -> int:
        if not text.isdigit() or int(text) not in allowed:
            raise BadParameter(f"interval: {text[:20]!r} is not one of the allowed intervals "
                               f"{', '.join(map(str, allowed))} (seconds)")
        return int(text)

    async def check_meter(request: Request, meter: str | None) -> str:
        p = await web.reader(request)

        def visible(db: Database) -> list[str]:
            return p.visible(db.meters())

        ids = await web.run(visible)
        names = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "") or "none registered"
        if meter is None or not meter.strip():
            raise BadParameter(f"meter: missing; meters: {names}")
        check_meter_id(meter)
        if meter not in ids:
            raise NotFoundError(f"unknown meter {meter!r}; meters: {names}")
        return meter

    def interval_data(db: Database, meter_id: str, lo: int, hi: int, live: bool) -> dict[str, Any]:
        meter = settings.meter(meter_id)
        curve = load_curve(db, meter, lo, hi, gap_ms)
        energy, watts, _ = curve.buckets(np.array([lo, hi], dtype=np.int64))
        power, kwh, estimated = clean(float(watts[0])), clean(float(energy[0])), False
        if power is None and live:
            guess = curve.latest_power(now_ms(), gap_ms)
            if guess is not None:
                power, kwh, estimated = clean(guess), clean(guess * (hi - lo) / 3.6e9), True
        last = curve.register(np.array([min(hi, curve.last_ms)], dtype=np.int64))[0] if curve.last_ms >= 0 \
            else float("nan")
        return {"meter_id": meter_id, "start": format_timestamp(from_ms(lo)), "end": format_timestamp(from_ms(hi)),
                "interval_s": (hi - lo) // 1000, "power_w": power, "energy_kwh": kwh, "estimated": estimated,
                "register_kwh": clean(last)}

    @app.get("/api/stream", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
    async def stream(request: Request, meter: str | None = None, interval: str = "5", start: str | None = None,
                     start_index: str | None = Query(None, description="Seconds since the meter's local "
                                                                        "midnight today (the original service)")
                     ) -> StreamingResponse:
        """Mean power and energy per ``interval`` as Server-Sent Events (see the module docs)."""
        seconds = check_interval(interval)
        meter_id = await check_meter(request, meter)
        step = seconds * 1000
        resume = request.headers.get("last-event-id")
        if resume:
            if not resume.isdigit() or not 946_684_800_000 <= int(resume) <= now_ms() + step:
                raise BadParameter(f"Last-Event-ID: {resume[:20]!r} is not an event id of this stream")
            pos, replay = int(resume), True
        elif start is not None and start_index is not None:
            raise BadParameter("start_index: give start or start_index, not both")
        elif start_index is not None:
            if not start_index.isdigit() or int(start_index) >= 86400:
                raise BadParameter(f"start_index: {start_index[:20]!r} is not 0..86399 seconds since midnight")
            tz = ZoneInfo(settings.meter(meter_id).timezone)
            midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
            pos, replay = to_ms((midnight + timedelta(seconds=int(start_index))).astimezone(UTC)), True
        elif start is not None:
            t0 = bound("start", start)
            assert t0 is not None
            pos, replay = to_ms(t0), True
        else:
            now = now_ms()
            pos, replay = now - now % step, False
        if pos > now_ms():
            raise BadParameter(f"start: {format_timestamp(from_ms(pos))} is in the future")
        heartbeat = settings.web.heartbeat_s

        async def events() -> AsyncIterator[str]:
            nonlocal pos
            yield f"retry: 3000\n: streaming {meter_id} every {seconds} s\n\n"
            loop = asyncio.get_running_loop()
            next_send = loop.time()
            while True:
                end = pos + step
                wait_ms = end - now_ms()
                pace = next_send - loop.time() if replay else 0.0
                delay = max(wait_ms / 1000, pace)
                if delay > 0:
                    await asyncio.sleep(min(delay, heartbeat))
                    if delay > heartbeat:
                        yield ": heartbeat\n\n"
                    continue
                live = end > now_ms() - step
                data = await web.run(functools.partial(interval_data, meter_id=meter_id, lo=pos, hi=end, live=live))
                yield f"id: {end}\nevent: power\ndata: {json.dumps(data)}\n\n"
                pos = end
                next_send = max(next_send + seconds, loop.time()) if replay else loop.time()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/stream/stats")
    async def stream_stats(request: Request, meter: str | None = None, window: str = "1h",
                           interval: str = "60") -> dict[str, Any]:
        """Statistics of the interval powers over the last ``window`` (15m, 1h, 6h, 24h, 7d or seconds)."""
        seconds = check_interval(interval)
        meter_id = await check_meter(request, meter)
        span_s = WINDOWS.get(window) or (int(window) if window.isdigit() else 0)
        if not seconds <= span_s <= 31 * 86400:
            raise BadParameter(f"window: {window[:20]!r} is not one of {', '.join(WINDOWS)} or {seconds}..2678400 "
                               "seconds")
        if span_s // seconds > settings.web.max_points * 10:
            raise BadParameter(f"window: {span_s // seconds} intervals of {seconds} s; at most "
                               f"{settings.web.max_points * 10} (use a longer interval)")
        hi = now_ms()
        hi -= hi % (seconds * 1000)
        edges = hi - span_s * 1000 + np.arange(span_s // seconds + 1, dtype=np.int64) * seconds * 1000

        def fetch(db: Database) -> dict[str, Any]:
            curve = load_curve(db, settings.meter(meter_id), int(edges[0]), hi, gap_ms)
            _, watts, _ = curve.buckets(edges)
            return {"meter_id": meter_id, "window_s": span_s, "interval_s": seconds,
                    "start": format_timestamp(from_ms(int(edges[0]))), "end": format_timestamp(from_ms(hi)),
                    "intervals": len(watts), "power_w": quick_stats(watts)}

        return await web.run(fetch)
