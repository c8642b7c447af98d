"""``smartmeter invoice --meter ID --period 2026-11 [--format text|json|pdf] [-o FILE]`` and the invoice's QR code.

The QR code carries the amount and the reference: with currency EUR and ``billing.iban`` set it is an EPC/SEPA
credit-transfer QR (the European Payments Council's format that banking apps scan), otherwise a plain text
``<reference> <amount> <currency>``. The PDF is drawn with matplotlib's PDF backend.
"""

from __future__ import annotations

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
@click.option("--format", "fmt", type=click.Choice(["text", "json", "pdf"]), default="text", show_default=True)
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
    if fmt == "json":
        d = inv.as_dict()
        d["qr_text"] = payment_text(inv, settings.billing)
        body = json.dumps(d, indent=2) + "\n"
    else:
        body = render_text(inv) + "\n  QR: " + payment_text(inv, settings.billing).replace("\n", " | ") + "\n"
    if output is not None:
        output.write_text(body, encoding="utf-8")
    else:
        click.echo(body, nl=False)
