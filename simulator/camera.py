"""The ``sim`` camera backend: a virtual camera in front of the simulated meter (``meter_render``), for demos and
tests. It sits in the simulator (a layer above raspi); raspi reaches it only through its backend table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from smartmeter.raspi.camera import Camera
from smartmeter.settings import CameraSettings
from smartmeter.simulator.meter_render import MeterRenderer


class SimCamera(Camera):
    """Photos of a simulated meter whose register advances at ``sim_power_w`` (constant) from ``sim_start_kwh``.

    ``register_at`` may be replaced with any function of time (e.g. a simulated household).
    """

    name = "sim"

    def __init__(self, settings: CameraSettings, *, register_at: Callable[[datetime], float] | None = None,
                 seed: int = 1) -> None:
        self.renderer = MeterRenderer(seed=seed)
        self.start = datetime.now(UTC)
        self.start_kwh, self.power_w = settings.sim_start_kwh, settings.sim_power_w
        self.register_at = register_at or self._constant_power

    def _constant_power(self, ts: datetime) -> float:
        hours = max((ts - self.start).total_seconds(), 0.0) / 3600.0
        return self.start_kwh + self.power_w * hours / 1000.0

    def capture(self, ts: datetime) -> bytes:
        jpeg, _truth = self.renderer.render(self.register_at(ts), ts)
        return jpeg
