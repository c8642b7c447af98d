"""Consumption and anomaly report of stored readings: text, JSON, Markdown, HTML (with plots) or PDF.

``build_report(db, settings, meter_ids=None, start=None, end=None, now=None) -> dict`` runs the scheduled analysis
(``smartmeter.server.events``: rollups refreshed, events stored) and the local-time statistics
(``smartmeter.server.analysis``) per meter over ``[start, end)``; ``render(report, fmt)`` formats it as text, json
or md; ``write_document(db, settings, report, fmt, path)`` writes html or pdf with matplotlib plots (daily bars,
hour x day heat map, load-duration curve, events timeline). Every format states the period it covers.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartmeter.errors import NotFoundError
from smartmeter.server.analysis import Statistics, statistics
from smartmeter.server.database import Database, to_ms
from smartmeter.server.events import analyse_meter, event_dict, stored_events
from smartmeter.server.notebook_data import load_photos, photo_outcomes, review_queue
from smartmeter.settings import Settings
from smartmeter.types import format_timestamp

log = logging.getLogger(__name__)

TEXT_DAYS = 31
TEXT_EVENTS = 50


def _iso(ts: datetime | None) -> str | None:
    return format_timestamp(ts) if ts is not None else None  # four-digit years, also before 1000


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


def stats_dict(s: Statistics) -> dict[str, Any]:
    days = s.days
    return {
        "meter": s.meter_id, "timezone": s.timezone, "readings": s.readings, "start": _iso(s.start), "end": _iso(s.end),
        "energy_kwh": round(s.energy_kwh, 3), "mean_power_w": _r(s.mean_power_w), "base_load_w": _r(s.base_load_w),
        "peak_sensor_w": _r(s.peak_sensor_w), "peak_hour_w": _r(s.peak_hour_w),
        "night_kwh": round(s.night_kwh, 3), "day_kwh": round(s.day_kwh, 3),
        "days": [{"day": d.date().isoformat(), "energy_kwh": round(float(r.kwh), 3), "hours": round(float(r.length_h)),
                  "coverage": round(float(r.coverage), 3), "base_w": _r(r.base_w)} for d, r in days.iterrows()]
        if len(days) else [],
        "weeks": {k.date().isoformat(): round(float(v), 3) for k, v in s.weeks.items()},
        "months": {str(k): round(float(v), 3) for k, v in s.months.items()},
        "years": {str(k): round(float(v), 3) for k, v in s.years.items()},
        "profile_w": s.profile,
        "load_duration": [{"percent_of_time": p, "power_w": round(w, 1)} for p, w in s.load_duration],
        "previous_period": {k: (_iso(v) if isinstance(v, datetime) else _r(v, 3)) for k, v in s.previous.items()},
    }


def capture_health(db: Database, settings: Settings, meter_id: str, st: Statistics, start: datetime | None,
                   end: datetime | None) -> dict[str, Any]:
    """Hours with readings; for camera meters photos expected (``camera.interval_s``) vs stored as readings, and what
    became of the photos the worker saw (unreadable share, review queue)."""
    out: dict[str, Any] = {"hours_spanned": st.hours_spanned, "hours_with_readings": st.hours_seen}
    photos = load_photos(db, meter_id, start, end)
    if not st.photos and not len(photos):
        return out
    expected = st.hours_spanned * 3600 / settings.camera.interval_s
    outcomes = photo_outcomes(photos) if len(photos) else {}
    out.update(photos_expected=round(expected), photo_readings=st.photos, hours_with_photos=st.hours_with_photos,
               photos_seen=len(photos), outcomes=outcomes,
               unreadable_share=round(outcomes.get("unreadable", 0) / len(photos), 3) if len(photos) else None,
               review_queue=review_queue(db, meter_id))
    return out


def build_report(db: Database, settings: Settings, meter_ids: list[str] | None = None,
                 start: datetime | None = None, end: datetime | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Analyse each meter (default: every stored meter) over [start, end)."""
    known = db.meters()
    if meter_ids:
        missing = [m for m in meter_ids if m not in known]
        if missing:
            raise NotFoundError(f"no such meter: {', '.join(missing)}", hint=f"stored meters: {', '.join(known)}")
    now = now or datetime.now(UTC)
    meters = []
    for m in meter_ids or known:
        state = analyse_meter(db, settings, m, now)
        st = statistics(db, settings.meter(m), start, end, refresh=False)
        d = stats_dict(st)
        evs = stored_events(db, m, None if start is None else to_ms(start), None if end is None else to_ms(end))
        d["capture"] = capture_health(db, settings, m, st, start, end)
        d["events"] = [event_dict(e) for e in evs]
        d["state"] = {k: state[k] for k in ("blackout", "superamento", "camera_stale")}
        meters.append(d)
    return {"generated": _iso(now), "period": {"start": _iso(start), "end": _iso(end)},
            "thresholds": settings.analysis.model_dump(), "meters": meters}


def _w(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} W"


def render_text(report: dict[str, Any], md: bool = False) -> str:
    h, b = ("## ", "- ") if md else ("", "  ")
    if not report["meters"]:
        return "no meters stored yet (import a CSV or run the worker first)\n"
    lines: list[str] = []
    p = report["period"]
    for m in report["meters"]:
        lines.append(f"{h}Meter {m['meter']}: {m['readings']} readings, {m['start'] or '-'} .. {m['end'] or '-'} "
                     f"(local time {m['timezone']}; "
                     f"asked for {p['start'] or 'the first reading'} .. {p['end'] or 'the last reading'})")
        if m["start"] is None:
            lines.append(f"{b}no readings in the period")
            lines.append("")
            continue
        st = m["state"]
        lines.append(f"{b}now: blackout {st['blackout']}, superamento {st['superamento']}, camera stale "
                     f"{st['camera_stale']}")
        lines.append(f"{b}energy {m['energy_kwh']:.3f} kWh (day {m['day_kwh']:.3f}, night 23-07 {m['night_kwh']:.3f}),"
                     f" mean {_w(m['mean_power_w'])}, base load {_w(m['base_load_w'])}, peak "
                     f"{_w(m['peak_sensor_w'])} (sensor) / {_w(m['peak_hour_w'])} (hourly mean)")
        prev = m["previous_period"]
        if prev.get("start"):
            lines.append(f"{b}previous period {prev['start']} .. {prev['end']}: {prev['energy_kwh']:.3f} kWh")
        cap = m["capture"]
        lines.append(f"{b}hours with readings: {cap['hours_with_readings']} of {cap['hours_spanned']}")
        if "photos_expected" in cap:
            share = cap["unreadable_share"]
            lines.append(f"{b}photos: {cap['photo_readings']} readings from photos of ~{cap['photos_expected']} "
                         f"expected ({cap['hours_with_photos']} hours with photos); worker saw {cap['photos_seen']}, "
                         f"unreadable {'n/a' if share is None else f'{100 * share:.0f} %'}, review queue "
                         f"{cap['review_queue'] if cap['review_queue'] is not None else 'n/a'}")
        days = m["days"][-TEXT_DAYS:]
        if days:
            more = f", the last {len(days)} of {len(m['days'])}" if len(m["days"]) > len(days) else ""
            lines.append(f"{b}energy per local day{more}:")
            for d in days:
                partial = f"  ({100 * d['coverage']:.0f}% covered)" if d["coverage"] < 0.999 else ""
                dst = f"  ({d['hours']} h day)" if d["hours"] != 24 else ""
                lines.append(f"{b}  {d['day']}  {d['energy_kwh']:8.3f} kWh{partial}{dst}")
        evs = m["events"]
        lines.append(f"{b}events: {len(evs) or 'none'}")
        for e in evs[:TEXT_EVENTS]:
            lines.append(f"{b}  {e['kind']:<14} {e['start']} .. {e['end']}{' (open)' if e['is_open'] else ''}  "
                         f"{e['detail']}")
        if len(evs) > TEXT_EVENTS:
            lines.append(f"{b}  ... and {len(evs) - TEXT_EVENTS} more (use --format json)")
        lines.append("")
    return "\n".join(lines)


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    return render_text(report, md=fmt == "md")


def write_document(db: Database, settings: Settings, report: dict[str, Any], fmt: str, path: Path) -> Path:
    """Write the report as ``html`` (plots inline) or ``pdf`` (one page of text, then the plots per meter)."""
    from smartmeter.server.report_plots import write_html, write_pdf

    return (write_html if fmt == "html" else write_pdf)(db, settings, report, path)
