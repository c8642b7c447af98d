"""The report's plots (matplotlib, headless Agg backend) and its HTML and PDF documents.

Per meter: daily energy bars (local days), an hour x day heat map (kWh per local hour), the load-duration curve
(hourly mean power, sorted) and the events timeline. HTML embeds them as PNG; PDF puts the text on a page, then one
page of plots per meter. Both start with the period the report covers.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smartmeter.errors import InputError
from smartmeter.server.analysis import local_index
from smartmeter.server.database import Database
from smartmeter.server.report import render_text
from smartmeter.settings import Settings
from smartmeter.types import parse_timestamp

log = logging.getLogger(__name__)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def meter_figure(db: Database, settings: Settings, m: dict[str, Any]) -> Any:
    """One figure with the four plots of one meter's report entry."""
    from smartmeter.server.analysis import statistics

    plt = _plt()
    p = m.get("_period", (None, None))
    st = statistics(db, settings.meter(m["meter"]), p[0], p[1], refresh=False)
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    fig.suptitle(f"Meter {m['meter']}: {m['start']} .. {m['end']} (local time {m['timezone']})")
    days = st.days
    if len(days):
        ax[0][0].bar(days.index, days["kwh"], color="tab:blue")
    ax[0][0].set(title="Energy per day", ylabel="kWh")
    ax[0][0].tick_params(axis="x", labelrotation=45)
    hr = st.hours
    if len(hr):
        loc = local_index(hr.index, st.timezone)
        grid = pd.DataFrame({"day": loc.date, "hour": loc.hour, "kwh": hr["kwh"].to_numpy()})
        heat = grid.pivot_table(index="hour", columns="day", values="kwh", aggfunc="sum").reindex(range(24))
        im = ax[0][1].imshow(heat.to_numpy(), aspect="auto", origin="lower", cmap="viridis",
                             extent=(0, heat.shape[1], 0, 24))
        fig.colorbar(im, ax=ax[0][1], label="kWh")
        w = np.sort(hr["power_w"][hr["coverage"] >= 0.999].to_numpy())[::-1]
        ax[1][0].plot(np.linspace(0, 100, w.size), w)
    ax[0][1].set(title="kWh per hour (hour x day)", ylabel="local hour", xlabel="day")
    ax[1][0].set(title="Load-duration curve (hourly mean)", xlabel="% of hours", ylabel="W")
    evs = m["events"]
    kinds = sorted({e["kind"] for e in evs})
    for y, k in enumerate(kinds):
        spans = [(parse_timestamp(e["start"]), parse_timestamp(e["end"])) for e in evs if e["kind"] == k]
        ax[1][1].broken_barh([(a, max(b - a, pd.Timedelta(minutes=30))) for a, b in spans], (y - 0.4, 0.8))
    ax[1][1].set_yticks(range(len(kinds)), kinds)
    ax[1][1].set(title=f"Events ({len(evs)})", xlabel="UTC")
    ax[1][1].tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    return fig


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _periods(report: dict[str, Any]) -> None:
    p = report["period"]
    span = (parse_timestamp(p["start"]) if p["start"] else None, parse_timestamp(p["end"]) if p["end"] else None)
    for m in report["meters"]:
        m["_period"] = span


def write_html(db: Database, settings: Settings, report: dict[str, Any], path: Path) -> Path:
    _periods(report)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>SmartMeter report</title></head><body>",
             f"<h1>SmartMeter report</h1><pre>{html.escape(render_text(report))}</pre>"]
    for m in report["meters"]:
        if m["start"] is not None:
            parts.append(f"<h2>Meter {html.escape(m['meter'])}</h2><img alt='plots of {html.escape(m['meter'])}' "
                         f"src='data:image/png;base64,{_png(meter_figure(db, settings, m))}'>")
    parts.append("</body></html>\n")
    _write(path, "".join(parts).encode("utf-8"))
    return path


def write_pdf(db: Database, settings: Settings, report: dict[str, Any], path: Path) -> Path:
    from matplotlib.backends.backend_pdf import PdfPages

    plt = _plt()
    _periods(report)
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        text = render_text(report).splitlines()
        for i in range(0, max(len(text), 1), 70):
            fig = plt.figure(figsize=(8.27, 11.69))
            fig.text(0.04, 0.98, "\n".join(text[i:i + 70]), va="top", family="monospace", fontsize=6.5)
            pdf.savefig(fig)
            plt.close(fig)
        for m in report["meters"]:
            if m["start"] is not None:
                fig = meter_figure(db, settings, m)
                pdf.savefig(fig)
                plt.close(fig)
    _write(path, buf.getvalue())
    return path


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror}") from exc
