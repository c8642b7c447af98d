"""Settings sections ``billing:``, ``alerts:`` and ``homeassistant:`` (part of ``smartmeter.settings``' tree).

A tariff follows the structure of the public utility rate database (URDB): an *energy rate structure* (a list of
periods, each a list of tiers: kWh blocks per billing period with a price), a *schedule* (which period applies in
each local hour, weekday and weekend/holiday, optionally per month) and *fixed charges* (per day or per month), plus
per-kWh taxes and VAT. Several tariffs over time: each applies from its ``start`` (local midnight) to the next one's.
Secrets (SMTP password, webhook secret) are never here: see ``smartmeter.secrets``.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(Part):
    max_kwh: float | None = Field(None, gt=0, description="Upper end of this block, kWh consumed in the period in "
                                                          "the billing period so far; None = no upper end (last).")
    price: float = Field(..., ge=0, description="Price of one kWh in this block, currency per kWh.")


class RatePeriod(Part):
    name: str = Field("energy", description="Name shown on the invoice line (e.g. peak, off-peak, F1).")
    tiers: list[Tier] = Field(..., min_length=1, description="Blocks in increasing order; the last has no max_kwh.")

    @field_validator("tiers")
    @classmethod
    def _ordered(cls, v: list[Tier]) -> list[Tier]:
        maxes = [t.max_kwh for t in v]
        if maxes[-1] is not None or any(m is None for m in maxes[:-1]):
            raise ValueError("only the last tier has no max_kwh, and it must have none")
        if any(b <= a for a, b in zip(maxes[:-2], maxes[1:-1], strict=True)):  # type: ignore[operator]
            raise ValueError("tier max_kwh must increase")
        return v


Schedule = list[int] | list[list[int]]
Channel = Literal["mqtt", "webhook", "email"]
CHANNELS: tuple[Channel, ...] = ("mqtt", "webhook", "email")


class FixedCharge(Part):
    name: str = Field("fixed charge", description="Name shown on the invoice line.")
    amount: float = Field(..., ge=0, description="Amount per day or per month, currency.")
    per: Literal["day", "month"] = Field("month", description="day: times the local days covered; month: times the "
                                                              "share of the calendar month covered.")


class Tax(Part):
    name: str = Field(..., description="Name shown on the invoice line (e.g. excise).")
    per_kwh: float = Field(..., ge=0, description="Amount per kWh consumed, currency.")


class Tariff(Part):
    name: str = Field(..., description="Tariff name shown on the invoice.")
    start: date = Field(..., description="First local day (meter time zone) this tariff applies; it ends where the "
                                         "next tariff starts.")
    meters: list[str] = Field(default_factory=list, description="Meters it applies to; empty = every meter.")
    energy: list[RatePeriod] = Field(..., min_length=1, description="Energy rate structure: the schedule's period "
                                                                    "numbers index this list.")
    weekday_schedule: Schedule = Field(default_factory=lambda: [0] * 24, description="Period of each local hour on "
                                       "weekdays: 24 numbers, or 12 lists of 24 (one per month).")
    weekend_schedule: Schedule | None = Field(None, description="Same for Saturdays, Sundays and holidays; None = "
                                                                "weekday_schedule.")
    holidays: list[date] = Field(default_factory=list, description="Local days billed with weekend_schedule.")
    fixed: list[FixedCharge] = Field(default_factory=list, description="Fixed charges.")
    taxes: list[Tax] = Field(default_factory=list, description="Per-kWh taxes (before VAT).")
    vat_percent: float = Field(0.0, ge=0, le=100, description="VAT on everything above, percent.")

    @model_validator(mode="after")
    def _schedules(self) -> Tariff:
        for name in ("weekday_schedule", "weekend_schedule"):
            sched = getattr(self, name)
            if sched is None:
                continue
            rows = sched if sched and isinstance(sched[0], list) else [sched]
            if len(rows) not in (1, 12) or any(len(r) != 24 for r in rows):
                raise ValueError(f"{name} must be 24 period numbers or 12 lists of 24")
            bad = {p for r in rows for p in r if not 0 <= p < len(self.energy)}
            if bad:
                raise ValueError(f"{name} names periods {sorted(bad)}; energy has {len(self.energy)}")
        return self


class BillingSettings(Part):
    currency: str = Field("EUR", pattern="^[A-Z]{3}$", description="ISO 4217 currency of every amount.")
    tariffs: list[Tariff] = Field(default_factory=list, description="Tariffs over time (any order).")
    creditor: str = Field("", description="Payee name on the payment QR code (EPC/SEPA QR needs it with an IBAN).")
    iban: str | None = Field(None, description="Payee IBAN: with currency EUR the QR code is an EPC/SEPA payment.")


class AlertRule(Part):
    name: str = Field(..., pattern="^[a-z0-9_-]+$", description="Rule name (part of the alert key).")
    events: list[str] = Field(default_factory=list, description="Event kinds (blackout, power_high, camera_stale, "
                                                                "unusual, ...): an open or new one raises the alert.")
    bill_above: float | None = Field(None, gt=0, description="Alert when the projected bill of the current period "
                                                             "is above this, currency.")
    bill_above_last_percent: float | None = Field(None, gt=0, description="Alert when the projected bill is this "
                                                  "many percent above the last period's, percent.")
    meters: list[str] = Field(default_factory=list, description="Meters the rule watches; empty = every meter.")
    channels: list[Channel] = Field(default_factory=lambda: list(CHANNELS),
                                    description="Channels (those configured) it uses: mqtt, webhook, email.")

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        if not self.events and self.bill_above is None and self.bill_above_last_percent is None:
            raise ValueError("a rule needs events, bill_above or bill_above_last_percent")
        return self


class AlertsSettings(Part):
    rules: list[AlertRule] = Field(default_factory=list, description="Alert rules.")
    quiet_s: float = Field(3600.0, ge=0, description="After an alert, the same rule and meter alert again only this "
                                                     "much later (flapping conditions), s.")
    poll_s: float = Field(0.5, gt=0, description="`alerts run`: seconds between passes over events and the outbox.")
    retry_s: float = Field(10.0, gt=0, description="First retry delay of a failed delivery, doubled each try, s.")
    retry_max_s: float = Field(600.0, gt=0, description="Longest delay between delivery tries (never given up), s.")
    mqtt_topic: str | None = Field(None, description="MQTT channel topic, e.g. smartmeter/{meter}/alert ({meter} = "
                                   "meter id); the broker is the mqtt: section's; None = off.")
    webhook_url: str | None = Field(None, description="Webhook channel: POST JSON here, signed with HMAC-SHA256 "
                                    "(secret SMARTMETER_ALERTS_WEBHOOK_SECRET(_FILE)); None = off.")
    smtp_host: str | None = Field(None, description="E-mail channel: SMTP server; None = off.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_starttls: bool = Field(True, description="Use STARTTLS (off only for a local relay).")
    smtp_username: str | None = Field(None, description="SMTP user; password SMARTMETER_ALERTS_SMTP_PASSWORD(_FILE).")
    mail_from: str = Field("smartmeter@localhost", description="Sender address.")
    mail_to: list[str] = Field(default_factory=list, description="Recipients.")
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one delivery attempt, s.")

    def configured(self) -> set[Channel]:
        """The channels these settings can deliver to."""
        out: set[Channel] = set()
        if self.mqtt_topic:
            out.add("mqtt")
        if self.webhook_url:
            out.add("webhook")
        if self.smtp_host and self.mail_to:
            out.add("email")
        return out


class HomeAssistantSettings(Part):
    enabled: bool = Field(False, description="Publish meters to Home Assistant by MQTT discovery (mqtt: broker).")
    discovery_prefix: str = Field("homeassistant", description="HA's discovery prefix.")
    node_id: str = Field("smartmeter", pattern="^[A-Za-z0-9_-]+$", description="Node id in discovery topics.")
    state_prefix: str = Field("smartmeter/ha", description="Topics of states and availability: PREFIX/<meter>/state, "
                                                           "PREFIX/status.")
