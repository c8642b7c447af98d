"""Read routes for the dashboard and other clients: latest reading, power series, period totals, statistics,
capture health, the latest photo with its digits, the review queue (and the one write here: a review value).

Every route checks who asks (``Web.reader`` / ``Web.writer``) and the meter (404 unknown, 403 not theirs); a bad
parameter is 422 naming it. Nothing here returns a whole history: series are bucketed (``web.max_points``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from smartmeter.errors import InputError, NotFoundError, SmartMeterError
from smartmeter.server import photos_repo, review_repo
from smartmeter.server.database import Database, iso_ms, now_ms, to_ms
from smartmeter.server.payloads import decode_json
from smartmeter.server.web.context import BadParameter, Web, json_body, known_meter, read_body, span
from smartmeter.server.web.series import AnswerCache, clean, clean_all, load_curve
from smartmeter.types import format_timestamp

STEPS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


def period_starts(now: datetime, tz: str) -> dict[str, datetime]:
    """Local midnight of today, the first of this month and of this year, as UTC instants."""
    local = now.astimezone(ZoneInfo(tz))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"today": day.astimezone(UTC), "month": day.replace(day=1).astimezone(UTC),
            "year": day.replace(month=1, day=1).astimezone(UTC)}


def add_data_routes(app: FastAPI, web: Web) -> None:
    settings = web.settings
    answers = AnswerCache()  # power series with explicit bounds, until the next commit to the database

    @app.get("/api/meters/{meter_id}/latest")
    async def latest(meter_id: str, request: Request) -> dict[str, Any]:
        """The meter's latest stored reading and its age in seconds (``reading`` null when none yet)."""
        await web.reader(request, meter_id)

        def fetch(db: Database) -> dict[str, Any]:
            known_meter(db, meter_id)
            r = db.last_reading(meter_id)
            if r is None:
                return {"meter_id": meter_id, "reading": None, "age_s": None}
            return {"meter_id": meter_id, "age_s": round((now_ms() - to_ms(r.timestamp)) / 1000, 3),
                    "reading": {"timestamp": format_timestamp(r.timestamp), "contatore": r.value_kwh,
                                "potenza": None if r.power_w is None else r.power_w / 1000, "source": r.source,
                                "confidence": r.confidence}}

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/power")
    async def power(meter_id: str, request: Request, start: str | None = None, end: str | None = None,
                    step: str = Query("1h", description="Bucket: " + ", ".join(STEPS) + " or seconds")) -> Any:
        """Mean power and energy per bucket over [start, end) (default: the last 24 hours). A bucket the readings
        do not cover on both ends has null power; ``reported_w`` is the mean sensor-reported power inside."""
        await web.reader(request, meter_id)
        seconds = STEPS.get(step) or (int(step) if step.isdigit() else 0)
        if not 10 <= seconds <= 31 * 86400:
            raise BadParameter(f"step: {step!r} is not one of {', '.join(STEPS)} or 10..2678400 seconds")
        t0, t1 = span(start, end)
        hi = to_ms(t1) if t1 is not None else now_ms()
        lo = to_ms(t0) if t0 is not None else hi - 86_400_000
        lo -= lo % (seconds * 1000) if t0 is None else 0
        if hi <= lo:
            raise BadParameter(f"start: {start!r} must be before end ({iso_ms(hi)})")
        n = -(-(hi - lo) // (seconds * 1000))
        if n > settings.web.max_points:
            raise BadParameter(f"step: {n} buckets of {seconds} s from start to end; at most "
                               f"{settings.web.max_points} (use a longer step or a shorter range)")
        edges = lo + np.arange(n + 1, dtype=np.int64) * seconds * 1000
        key = (meter_id, lo, n, seconds) if t0 is not None else None  # "the last 24 hours" moves: not kept

        def fetch(db: Database) -> Response:
            known_meter(db, meter_id)
            generation = answers.generation(db) if key is not None else None
            body = answers.get(key, generation)
            if body is None:
                meter = settings.meter(meter_id)
                curve = load_curve(db, meter, lo, int(edges[-1]), int(settings.analysis.gap_s * 1000))
                energy, watts, reported = curve.buckets(edges)
                body = bytes(json_body({"meter_id": meter_id, "step_s": seconds, "start": iso_ms(lo),
                                  "end": iso_ms(int(edges[-1])), "t": (edges[:-1] // 1000).tolist(),
                                  "power_w": clean_all(watts), "energy_kwh": clean_all(energy),
                                  "reported_w": clean_all(reported)}).body)
                answers.put(key, generation, body)
            return Response(body, media_type="application/json")

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/summary")
    async def summary(meter_id: str, request: Request) -> dict[str, Any]:
        """Energy today, this month and this year (the meter's local time): the register's change since each
        period began (interpolated across its start; from the period's first reading after a gap)."""
        await web.reader(request, meter_id)

        def fetch(db: Database) -> dict[str, Any]:
            known_meter(db, meter_id)
            meter = settings.meter(meter_id)
            last = db.last_reading(meter_id)
            out: dict[str, Any] = {"meter_id": meter_id, "timezone": meter.timezone,
                                   "register_kwh": None if last is None else last.value_kwh}
            gap = timedelta(seconds=settings.analysis.gap_s)
            for name, since in period_starts(datetime.now(UTC), meter.timezone).items():
                before = db.last_reading(meter_id, since)
                after = db.first_reading_after(meter_id, since - timedelta(milliseconds=1))
                if last is None or after is None or last.timestamp < since:
                    out[name + "_kwh"] = None
                    continue
                base = after.value_kwh  # no reading close before the period: count from its first reading
                if before is not None and after.timestamp - before.timestamp <= gap:
                    share = (since - before.timestamp) / (after.timestamp - before.timestamp)
                    base = before.value_kwh + (after.value_kwh - before.value_kwh) * share
                out[name + "_kwh"] = round(last.value_kwh - base, 4)
            return out

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/statistics")
    async def statistics(meter_id: str, request: Request, start: str | None = None,
                         end: str | None = None) -> dict[str, Any]:
        """Energy, mean and base load, peaks, day/night split over [start, end) (``smartmeter report``'s numbers)."""
        await web.reader(request, meter_id)
        t0, t1 = span(start, end)

        def fetch(db: Database) -> dict[str, Any]:
            from smartmeter.server.analysis import statistics as stats

            known_meter(db, meter_id)
            s = stats(db, settings.meter(meter_id), t0, t1, high_w=settings.analysis.power_threshold_w)
            return {"meter_id": meter_id, "timezone": s.timezone, "readings": s.readings,
                    "start": None if s.start is None else format_timestamp(s.start),
                    "end": None if s.end is None else format_timestamp(s.end),
                    "energy_kwh": clean(s.energy_kwh), "mean_power_w": clean(s.mean_power_w),
                    "base_load_w": clean(s.base_load_w), "peak_sensor_w": clean(s.peak_sensor_w),
                    "peak_hour_w": clean(s.peak_hour_w), "night_kwh": clean(s.night_kwh),
                    "day_kwh": clean(s.day_kwh), "hours_seen": s.hours_seen, "hours_spanned": s.hours_spanned,
                    "photos": s.photos}

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/heatmap")
    async def heatmap(meter_id: str, request: Request, days: int = Query(28, ge=1, le=366)) -> dict[str, Any]:
        """kWh per local hour (columns 0-23) of each of the last ``days`` local days (rows, oldest first), from
        the hourly rollups; null where no reading covers the hour."""
        await web.reader(request, meter_id)

        def fetch(db: Database) -> dict[str, Any]:
            from smartmeter.server import rollups
            from smartmeter.server.analysis import hourly, local_index

            known_meter(db, meter_id)
            meter = settings.meter(meter_id)
            rollups.refresh(db, meter_id, settings.analysis.power_threshold_w)
            today = period_starts(datetime.now(UTC), meter.timezone)["today"]
            lo = to_ms(today - timedelta(days=days - 1)) - 3_600_000
            hr = hourly(rollups.load_hours(db, meter_id, lo, now_ms()))
            hr = hr[(hr["coverage"] > 0) & (hr.index >= lo + 3_600_000)]
            loc = local_index(hr.index, meter.timezone)
            first = (today - timedelta(days=days - 1)).astimezone(ZoneInfo(meter.timezone)).date()
            grid = np.full((days, 24), np.nan)
            for d, h, kwh in zip(loc.date, loc.hour, hr["kwh"].to_numpy(), strict=True):
                row = (d - first).days
                if 0 <= row < days:
                    grid[row, h] = kwh if np.isnan(grid[row, h]) else grid[row, h] + kwh  # DST: two 02:00s
            return {"meter_id": meter_id, "timezone": meter.timezone,
                    "days": [(first + timedelta(days=i)).isoformat() for i in range(days)],
                    "kwh": [[clean(x) for x in r] for r in grid]}

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/health")
    async def health(meter_id: str, request: Request, hours: float = Query(24.0, gt=0, le=24 * 366)) -> Any:
        """Capture health over the last ``hours``: photos by outcome, unreadable share, open review items."""
        await web.reader(request, meter_id)

        def fetch(db: Database) -> dict[str, Any]:
            known_meter(db, meter_id)
            since = datetime.now(UTC) - timedelta(hours=hours)
            rows = photos_repo.health_rows(db, meter_id, since)
            by: dict[str, int] = {}
            for _, status, _, _ in rows:
                by[status] = by.get(status, 0) + 1
            bad = by.get("failed", 0) + by.get("rejected", 0)
            last = rows[-1][0] if rows else None
            return {"meter_id": meter_id, "hours": hours, "photos": len(rows), "by_status": by,
                    "unreadable_share": clean(bad / len(rows)) if rows else None, "last_photo": iso_ms(last),
                    "review_open": review_repo.count_open(db, meter_id)}

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/photo")
    async def photo(meter_id: str, request: Request) -> dict[str, Any]:
        """The latest photo of a camera meter: what was read per digit ([value, confidence]), the outcome and
        reason, and the profile's digit and pointer boxes ([x, y, w, h]) to draw on ``photo.jpg``."""
        await web.reader(request, meter_id)

        def fetch(db: Database) -> dict[str, Any]:
            known_meter(db, meter_id)
            row = photos_repo.latest(db, meter_id)
            if row is None:
                raise NotFoundError(f"meter {meter_id!r} has no photos")
            boxes: dict[str, Any] = {"digits": [], "pointers": []}
            profile_path = settings.meter(meter_id).profile
            if profile_path is not None:
                from smartmeter.ocr.profile import load_profile

                try:
                    prof = load_profile(profile_path)
                    boxes = {"digits": [list(b) for b in prof.digits], "pointers": [list(b) for b in prof.pointers],
                             "decimals": prof.decimals}
                except SmartMeterError as exc:  # the photo is still worth showing without its boxes
                    boxes["error"] = exc.message
            return {"meter_id": meter_id, **row, "timestamp": iso_ms(int(row["ts_ms"])),  # type: ignore[call-overload]
                    "boxes": boxes, "image": f"/api/meters/{meter_id}/photo.jpg"}

        return await web.run(fetch)

    @app.get("/api/meters/{meter_id}/photo.jpg", response_class=Response)
    async def photo_jpg(meter_id: str, request: Request) -> Response:
        """The latest photo's JPEG, from the image store."""
        await web.reader(request, meter_id)

        def fetch(db: Database) -> str:
            known_meter(db, meter_id)
            row = photos_repo.latest(db, meter_id)
            if row is None:
                raise NotFoundError(f"meter {meter_id!r} has no photos")
            return str(row["key"])

        key = await web.run(fetch)

        def load() -> bytes:
            from smartmeter.store import open_store

            return open_store(settings.store).get(key)

        data = await web.run(lambda _db: load())
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @app.get("/api/review")
    async def review_queue(request: Request, meter: str | None = None, include_resolved: bool = False,
                           limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Photos a person should look at (oldest first), of the meters the asker may see."""
        p = await web.reader(request, meter)

        def fetch(db: Database) -> list[dict[str, Any]]:
            if meter is not None:
                known_meter(db, meter)
            items = review_repo.items(db, meter, include_resolved, limit)
            return [{"key": i.key, "meter_id": i.meter_id, "timestamp": None if i.ts is None else
                     format_timestamp(i.ts), "value_read": i.value_read, "reason": i.reason, "state": i.state}
                    for i in items if i.meter_id is None and p.meters is None or i.meter_id and p.sees(i.meter_id)]

        rows = await web.run(fetch)
        return {"count": len(rows), "items": rows}

    @app.post("/api/review/{key}", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["value"], "additionalProperties": False,
                                        "properties": {"value": {"type": "number", "minimum": 0}}}}}}})
    async def review_set(key: str, request: Request) -> dict[str, Any]:
        """Set the true register value of a photo in the review queue (``{"value": kWh}``): it becomes a trusted
        reading; 409 (nothing changed) when it fails the checks every reading passes."""
        p = await web.writer(request)
        body = decode_json(await read_body(request))
        if not isinstance(body, dict) or set(body) != {"value"} or isinstance(body["value"], bool) or \
                not isinstance(body["value"], int | float):
            raise InputError('body must be {"value": <register kWh>}')
        target = await web.run(lambda db: photos_repo.review_target(db, key))
        if target is None or not (p.meters is None or target[0] and p.sees(target[0])):
            raise NotFoundError(f"no photo {key!r}" if len(key) < 200 else "no such photo")

        def apply(db: Database) -> dict[str, int]:
            from smartmeter.server.review import set_value

            return set_value(db, settings, key, float(body["value"]), who=p.name, why="value set on the dashboard")

        return {"key": key, "changed": await web.run(apply)}
