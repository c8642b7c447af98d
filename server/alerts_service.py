"""The alert loop behind ``smartmeter alerts run``: every ``alerts.poll_s`` one :meth:`AlertService.pass_once` —
judge the rules (``smartmeter.server.alerts``), deliver the due outbox rows (``smartmeter.server.alerts_channels``)
and, with ``homeassistant.enabled``, publish the meters' states (``smartmeter.server.ha_discovery``).

An event stored by the analysis reaches the channels within one poll plus the delivery time (bench/alerts.py
measures it against a real mosquitto, a local webhook server and a local SMTP server).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from smartmeter.errors import SmartMeterError
from smartmeter.server import invoice
from smartmeter.server.alerts import BILL_EVERY_S, Evaluator
from smartmeter.server.alerts_channels import Channel, channels_from, deliver_due
from smartmeter.server.database import Database, now_ms
from smartmeter.server.ha_discovery import HaPublisher
from smartmeter.settings import Settings

log = logging.getLogger(__name__)


class AlertService:
    def __init__(self, settings: Settings, db: Database, channels: dict[str, Channel] | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.settings, self.db, self.clock = settings, db, clock
        self.evaluator = Evaluator()
        self.channels = channels_from(settings) if channels is None else channels
        self.ha = HaPublisher(settings, db.meters()) if settings.homeassistant.enabled else None
        self.costs: dict[str, str] = {}
        self.costs_at = -(2**62)

    def _costs(self, now: int) -> dict[str, str]:
        if not self.settings.billing.tariffs or now - self.costs_at < BILL_EVERY_S * 1000:
            return self.costs
        self.costs_at = now
        for meter_id in self.db.meters():
            zone = ZoneInfo(self.settings.meter(meter_id).timezone)
            period = datetime.fromtimestamp(now / 1000, zone).strftime("%Y-%m")
            try:
                self.costs[meter_id] = str(invoice.invoice_for(self.db, self.settings, meter_id, period).total)
            except SmartMeterError as exc:
                log.debug("no cost for %s: %s", meter_id, exc)
        return self.costs

    def pass_once(self) -> dict[str, Any]:
        now = self.clock()
        made = self.evaluator.evaluate(self.db, self.settings, now)
        sent, failed = deliver_due(self.db, self.channels, self.settings, now)
        published = 0
        if self.ha is not None:
            self.ha.add_meters(self.db.meters())
            published = self.ha.publish_states(self.db, self._costs(now))
        return {"made": len(made), "sent": sent, "failed": failed, "ha_states": published}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.pass_once()
            except SmartMeterError as exc:  # a database outage: log, try again next poll
                log.warning("alert pass failed: %s", exc)
            stop.wait(self.settings.alerts.poll_s)

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()
        if self.ha is not None:
            self.ha.close()
