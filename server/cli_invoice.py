"""``smartmeter invoice --meter ID --period 2026-11 [--format text|json|html|pdf] [-o FILE]`` and the QR code.

The QR code carries the amount and the reference: with currency EUR and ``billing.iban`` set it is an EPC/SEPA
credit-transfer QR (the European Payments Council's format that banking apps scan), otherwise a plain text
``<reference> <amount> <currency>``. The PDF is drawn with matplotlib's PDF backend; :func:`render_html` is the
fragment a dashboard page shows (inline SVG QR code).
"""

from __future__ import annotations

import html
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import segno

from smartmeter.errors import ConfigError, InputError
from smartmeter.server.database import open_database
from smartmeter.server.invoice import Invoice, invoice_for, render_text
from smartmeter.settings_billing import BillingSettings


def payment_text(inv: Invoice, billing: BillingSettings) -> str:
    """What the QR code says: an EPC/SEPA credit transfer (version 002, UTF-8) or ``<reference> <amount> <cur>``.

    The amount is the total, or the projected total of a period still running."""
    amount = inv.projected.total if inv.projected is not None and not inv.complete else inv.total
    if billing.iban and inv.currency == "EUR" and amount >= Decimal("0.01"):
        if not billing.creditor:
            raise ConfigError("billing.iban is set but billing.creditor is empty",
                              hint="the EPC payment QR needs the payee's name")
        return "\n".join(["BCD", "002", "1", "SCT", "", billing.creditor[:70], billing.iban.replace(" ", ""),
                          f"EUR{amount}", "", "", inv.reference[:140]])
    return f"{inv.reference} {amount} {inv.currency}"


def payment_qr(inv: Invoice, billing: BillingSettings) -> segno.QRCode:
    return segno.make(payment_text(inv, billing), error="m", boost_error=False)


def render_html(inv: Invoice, billing: BillingSettings) -> str:
    """The invoice as an HTML fragment (table ``invoice-lines``, boundary list, inline SVG QR code) for a dashboard
    page: ``GET`` handlers return it as is."""
    cur = html.escape(inv.currency)
    rows = "".join(f"<tr><td>{html.escape(ln.tariff)}</td><td>{html.escape(ln.text)}</td><td>{ln.quantity}</td>"
                   f"<td>{html.escape(ln.unit)}</td><td>{ln.unit_price}</td><td>{ln.amount}</td></tr>\n"
                   for ln in inv.lines)
    bounds = "".join(f"<li>{html.escape(b.as_dict()['at'])}: {b.value_kwh:.3f} kWh, {html.escape(b.how)}</li>"
                     for b in inv.boundaries)
    projected = "" if inv.projected is None or inv.complete else \
        f"<p class=\"projection\">projected total {inv.projected.total} {cur}</p>"
    return (f"<section class=\"invoice\"><h2>Invoice {html.escape(inv.reference)}</h2>"
            f"<p>meter {html.escape(inv.meter_id)}, period {html.escape(inv.period)}, {inv.energy_kwh:.3f} kWh from "
            f"{inv.readings} readings</p><table class=\"invoice-lines\"><thead><tr><th>tariff</th><th>item</th>"
            f"<th>quantity</th><th>unit</th><th>price</th><th>amount ({cur})</th></tr></thead><tbody>\n{rows}"
            f"</tbody><tfoot><tr><td colspan=\"5\">total</td><td>{inv.total}</td></tr></tfoot></table>{projected}"
            f"<ul class=\"boundaries\">{bounds}</ul><figure class=\"payment-qr\">"
            f"{payment_qr(inv, billing).svg_inline(scale=4)}<figcaption>{html.escape(inv.reference)}</figcaption>"
            "</figure></section>")


def render_pdf(inv: Invoice, billing: BillingSettings) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.backends.backend_pdf import FigureCanvasPdf
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.27, 11.69))  # A4
    FigureCanvasPdf(fig)
    text = render_text(inv)
    fig.text(0.05, 0.96, text, family="monospace", fontsize=5.5, va="top")
    qr = payment_qr(inv, billing)
    ax = fig.add_axes((0.72, 0.03, 0.23, 0.16))
    ax.imshow(1 - np.array(list(qr.matrix_iter(border=4)), dtype=np.uint8), cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    return buf.getvalue()


@click.command("invoice")
@click.option("--meter", "meter_id", required=True, help="Meter id.")
@click.option("--period", required=True, help="Billing period: YYYY-MM (a month) or YYYY-MM-DD (a day), local time.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html", "pdf"]), default="text",
              show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write here (pdf needs it).")
@click.pass_obj
def invoice_cmd(app: Any, meter_id: str, period: str, fmt: str, output: Path | None) -> None:
    """Invoice of one meter and billing period, line by line, with the readings used."""
    settings = app.settings
    with open_database(settings.database.url) as db:
        inv = invoice_for(db, settings, meter_id, period)
    if fmt == "pdf":
        if output is None:
            raise InputError("--format pdf needs --output FILE")
        output.write_bytes(render_pdf(inv, settings.billing))
        click.echo(f"wrote {output} (total {inv.total} {inv.currency})")
        return
    if fmt == "html":
        body = render_html(inv, settings.billing) + "\n"
    elif fmt == "json":
        d = inv.as_dict()
        d["qr_text"] = payment_text(inv, settings.billing)
        body = json.dumps(d, indent=2) + "\n"
    else:
        body = render_text(inv) + "\n  QR: " + payment_text(inv, settings.billing).replace("\n", " | ") + "\n"
    if output is not None:
        output.write_text(body, encoding="utf-8")
    else:
        click.echo(body, nl=False)
