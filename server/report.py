"""Power and anomaly summary of stored readings, as text (for people) or JSON (for tools).

``build_report(db, settings, meter_ids=None, start=None, end=None, now=None) -> dict`` runs
``smartmeter.server.analysis.analyse`` per meter; ``render_text(report)`` formats it. This is what ``smartmeter report``
prints (and what ``make demo`` shows at the end).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from smartmeter.errors import NotFoundError
from smartmeter.server.analysis import Analysis, analyse
from smartmeter.server.storage import Database
from smartmeter.settings import Settings

log = logging.getLogger(__name__)

TEXT_DAYS = 14
TEXT_EVENTS = 50


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts is not None else None


def analysis_dict(a: Analysis) -> dict[str, Any]:
    s = a.stats
    return {
        "meter": a.meter_id,
        "readings": s.readings,
        "start": _iso(s.start),
        "end": _iso(s.end),
        "energy_kwh": round(s.energy_kwh, 4),
        "mean_power_w": None if s.mean_power_w is None else round(s.mean_power_w, 1),
        "peak_power_w": None if s.peak_power_w is None else round(s.peak_power_w, 1),
        "peak_reported_w": s.peak_reported_w,
        "base_load_w": None if s.base_load_w is None else round(s.base_load_w, 1),
        "power_source": s.power_source,
        "load_duration": [{"percent_of_time": p, "power_w": round(w, 1)} for p, w in s.load_duration],
        "days": [{"day": d.day.isoformat(), "energy_kwh": round(d.energy_kwh, 4), "coverage": round(d.coverage, 3)}
                 for d in s.days],
        "intervals": {k: sum(1 for i in a.intervals if i.kind == k) for k in ("step", "gap", "flat")},
        "events": [{"kind": e.kind, "start": _iso(e.start), "end": _iso(e.end), "value": round(e.value, 3),
                    "detail": e.detail} for e in a.events],
    }


def build_report(db: Database, settings: Settings, meter_ids: list[str] | None = None,
                 start: datetime | None = None, end: datetime | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Analyse each meter (default: every stored meter) over [start, end)."""
    known = db.meters()
    if meter_ids:
        missing = [m for m in meter_ids if m not in known]
        if missing:
            raise NotFoundError(f"no such meter: {', '.join(missing)}", hint=f"stored meters: {', '.join(known)}")
    ids = meter_ids or known
    now = now or datetime.now(UTC)
    meters = [analysis_dict(analyse(db.readings(m, start, end), settings.meter(m), settings.analysis, now))
              for m in ids]
    return {"generated": _iso(now), "thresholds": settings.analysis.model_dump(), "meters": meters}


def _w(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} W"


def render_text(report: dict[str, Any]) -> str:
    lines: list[str] = []
    if not report["meters"]:
        return "no meters stored yet (import a CSV or run the worker first)\n"
    for m in report["meters"]:
        lines.append(f"Meter {m['meter']}: {m['readings']} readings, {m['start'] or '-'} .. {m['end'] or '-'}")
        if not m["readings"]:
            lines.append("")
            continue
        lines.append(f"  energy {m['energy_kwh']:.3f} kWh, mean {_w(m['mean_power_w'])}, peak {_w(m['peak_power_w'])}"
                     f" (derived) / {_w(m['peak_reported_w'])} (sensor), base load {_w(m['base_load_w'])}")
        iv = m["intervals"]
        lines.append(f"  power intervals: {iv['step']} between register steps, {iv['gap']} across gaps, "
                     f"{iv['flat']} without a step (upper bound only)")
        if m["load_duration"]:
            curve = ", ".join(f"{d['percent_of_time']}%: {d['power_w']:,.0f}" for d in m["load_duration"])
            lines.append(f"  load duration ({m['power_source']}), W exceeded for % of time: {curve}")
        days = m["days"][-TEXT_DAYS:]
        if days:
            lines.append("  energy per day (UTC):")
            for d in days:
                partial = f"  ({100 * d['coverage']:.0f}% of the day covered)" if d["coverage"] < 0.999 else ""
                lines.append(f"    {d['day']}  {d['energy_kwh']:8.3f} kWh{partial}")
        events = m["events"]
        lines.append(f"  anomalies: {len(events) or 'none'}")
        for e in events[:TEXT_EVENTS]:
            lines.append(f"    {e['kind']:<13} {e['start']} .. {e['end']}  {e['detail']}")
        if len(events) > TEXT_EVENTS:
            lines.append(f"    ... and {len(events) - TEXT_EVENTS} more (use --format json)")
        lines.append("")
    return "\n".join(lines)


def render(report: dict[str, Any], fmt: str) -> str:
    return json.dumps(report, indent=2) + "\n" if fmt == "json" else render_text(report)
