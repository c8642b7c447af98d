"""The one typed settings tree, loaded once at the edge (the CLI) and passed down.

Unknown keys are rejected and every field is described. Secrets never live here: see ``smartmeter.secrets``.
A bad file gives one ``ConfigError`` naming the key and the line (exit code 2).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from smartmeter.domain import METER_ID_CHARS
from smartmeter.errors import ConfigError
from smartmeter.settings_billing import AlertsSettings, BillingSettings, HomeAssistantSettings
from smartmeter.validation_errors import describe

log = logging.getLogger(__name__)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalStoreSettings(Section):
    root: Path = Field(Path("var/images"), description="Folder holding the photos (the default image store).")


class DropboxSettings(Section):
    app_key: str = Field("", description="Dropbox app key (public). The refresh token is a secret: "
                         "SMARTMETER_DROPBOX_REFRESH_TOKEN or SMARTMETER_DROPBOX_REFRESH_TOKEN_FILE.")
    root: str = Field("/smartmeter", description="Dropbox folder holding the photos, e.g. /smartmeter.")
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one HTTP request to Dropbox, seconds.")
    max_retries: int = Field(5, ge=0, description="Retries on 429, 5xx and dropped connections.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay, doubled each retry (Retry-After wins).")
    ca_certs: Path | None = Field(None, description="PEM file of CA certificates to trust for Dropbox instead of "
                                                    "the default bundle (TLS-inspecting proxy); None = default.")
    client: Literal["sdk", "http"] = Field(
        "sdk", description="sdk: the official Dropbox SDK; http: the same API calls over the standard library "
                           "(about 40 MB less memory: what the camera daemon on a Pi uses).")


class StoreSettings(Section):
    backend: Literal["local", "dropbox"] = Field("local", description="Where photos are kept: local | dropbox.")
    local: LocalStoreSettings = Field(default_factory=LocalStoreSettings, description="Local folder store.")
    dropbox: DropboxSettings = Field(default_factory=DropboxSettings, description="Dropbox store.")


class DatabaseSettings(Section):
    url: str = Field("sqlite:///var/smartmeter.db",
                     description="sqlite:///PATH (default, embedded) or postgresql://USER@HOST/DB "
                                 "(password from SMARTMETER_DATABASE_PASSWORD).")


class CnnReaderSettings(Section):
    engine: Literal["cnn"] = Field("cnn", description="The shipped CNN digit model, run with onnxruntime "
                                                      "(sees drums between two digits).")
    model: Path | None = Field(None, description="ONNX digit model; default: the model shipped with the package.")
    threads: int = Field(1, ge=1, description="Threads for the CNN runtime.")
    views: Literal[1, 5] = Field(5, description="Views of each digit crop the model's output is averaged over "
                                                "(the crop as cut, and with a thin strip cut off each side; "
                                                "docs/model.md); 1 reads the crop as cut, with fewer crops answered.")
    min_confidence: float = Field(0.5, ge=0, le=1, description="A digit below this confidence makes the photo "
                                                               "unreadable.")


class TesseractReaderSettings(Section):
    engine: Literal["tesseract"] = Field(description="The tesseract binary, one process per digit (whole digits "
                                                     "only; apt-get install tesseract-ocr).")
    command: str | None = Field(None, description="tesseract binary (name on PATH or path); None = tesseract.")
    timeout_s: float = Field(30.0, gt=0, description="Longest one digit may take; past it the photo is "
                                                     "unreadable, s.")
    min_confidence: float = Field(0.5, ge=0, le=1, description="A digit below this confidence (tesseract's own, "
                                                               "scaled to 0-1) makes the photo unreadable.")


ReaderSettings = Annotated[CnnReaderSettings | TesseractReaderSettings, Field(discriminator="engine")]
READER_KEYS = {"engine", "model", "threads", "min_confidence"}  # before ocr.reader they sat directly under ocr


def validate_reader(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Wrap validator of a ``ReaderSettings`` field: ``cnn`` is short for ``{engine: cnn}``, and error locations
    name the keys as written (``reader.timeout_s``, not pydantic's ``reader.tesseract.timeout_s``)."""
    try:
        return handler({"engine": value} if isinstance(value, str) else value)
    except ValidationError as exc:
        tags = {"cnn", "tesseract"}
        errors: list[Any] = [{"type": e["type"], "loc": e["loc"][1:] if e["loc"][:1] and e["loc"][0] in tags
                              else e["loc"], "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})}
                             for e in exc.errors()]
        raise ValidationError.from_exception_data(exc.title, errors) from None


class OcrSettings(Section):
    reader: ReaderSettings = Field(default_factory=CnnReaderSettings,
                                   description="Digit reader: {engine: cnn | tesseract, ...}; a meter profile's "
                                               "reader overrides it, --engine overrides both.")

    _reader = field_validator("reader", mode="wrap")(validate_reader)

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        """``ocr.engine``/``model``/``threads``/``min_confidence`` (deprecated) move into ``ocr.reader``."""
        if not isinstance(data, dict) or not READER_KEYS & data.keys():
            return data
        old = {k: v for k, v in data.items() if k in READER_KEYS}
        if "reader" in data:
            raise ValueError(f"ocr.{', ocr.'.join(sorted(old))} must move into ocr.reader (one reader section)")
        log.warning("settings: ocr.%s: deprecated, write it under ocr.reader (e.g. ocr: {reader: {engine: %s}})",
                    ", ocr.".join(sorted(old)), old.get("engine", "cnn"))
        return {**{k: v for k, v in data.items() if k not in READER_KEYS}, "reader": {"engine": "cnn", **old}}


class MeterSettings(Section):
    id: str = Field(..., pattern="^" + METER_ID_CHARS + "$", description="Meter id, used in photo names and storage.")
    profile: Path | None = Field(None, description="Meter profile YAML (digit boxes, transforms); None = auto-locate.")
    max_power_w: float = Field(3 * 63 * 230, gt=0,
                               description="Largest plausible power, W (default: 3 x 63 A x 230 V main fuse).")
    backwards_tolerance_kwh: float = Field(0.0, ge=0,
                                           description="How far the register may seem to go back (last-digit "
                                                       "jitter) before a reading is rejected, kWh.")
    resolution_kwh: float = Field(0.1, gt=0, description="Smallest register step, kWh (e.g. 0.1 or 0.01).")
    digits: int | None = Field(None, ge=1, le=12, description="Digits of the register before the decimal point: "
                               "a reading must be below 10**digits kWh. None = from the profile (digits + "
                               "pointers - decimals), else 8.")
    min_kwh: float = Field(0.0, ge=0, description="Smallest plausible register value, kWh (e.g. what the meter "
                                                  "showed when installed); a reading below it is rejected.")
    max_kwh: float | None = Field(None, gt=0, description="Largest plausible register value, kWh; None = only the "
                                                          "digit count limits it.")
    timezone: str = Field("UTC", description="IANA time zone of the household (e.g. Europe/Rome): days, hours, "
                                             "weeks of the statistics and reports are local (DST days 23/25 h).")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Europe/Rome)") from exc
        return v


class IngestSettings(Section):
    earliest: datetime = Field(datetime(2000, 1, 1, tzinfo=UTC), description="Readings (CSV, API, MQTT, review, "
                               "corrections) timed before this are rejected (ISO 8601; default 2000-01-01T00:00Z).")
    future_slack_s: float = Field(300.0, ge=0, description="Readings timed more than this many seconds after the "
                                                           "server clock are rejected, s.")


class ValidationSettings(Section):
    confirm_frames: int = Field(2, ge=0, description="Frames that must agree before a reading near a digit "
                                                     "transition is published.")
    consensus_frames: int = Field(3, ge=1, description="Later frames agreeing with each other that overrule an "
                                                       "earlier accepted value (audited correction).")
    min_confidence: float = Field(0.6, ge=0, le=1, description="Whole-reading confidence below which a photo "
                                                               "goes to review.")
    hold_confidence: float = Field(0.8, ge=0, le=1, description="A digit below this confidence holds the reading "
                                                                "until neighbouring frames confirm it.")
    transition_band: float = Field(0.25, ge=0, le=0.5, description="A non-last digit whose drum position is "
                                                                   "within this of a half-roll (frac in [b, 1-b]) is "
                                                                   "mid-roll: the reading is held.")
    max_pending: int = Field(500, ge=1, description="Held or suspect frames kept per meter; past this the oldest go "
                                                    "to review.")
    confirm_hint_photos: int = Field(96, ge=1, description="A meter with this many photos and no stored reading "
                                                           "yet is told to confirm its register once (worker log, "
                                                           "meter adapt --status, the setup page).")
    kink_steps: float = Field(2.0, gt=0, description="A reading this many register steps off the straight line "
                                                      "between its neighbours is withdrawn (confident last-digit "
                                                      "misread).")
    kink_spread: float = Field(2.0, ge=0, description="For a meter with bursty load the kink limit grows: it is "
                                                      "the larger of kink_steps and this many times the 90th "
                                                      "percentile of how far the meter's readings of the day "
                                                      "before lie off their lines (0: kink_steps always).")
    kink_confidence: float = Field(0.97, ge=0, le=1, description="A camera reading read more surely than this "
                                                                 "(its confidence: at most its weakest digit's) "
                                                                 "is never withdrawn as a kink: the misreads kinks "
                                                                 "catch are unsure ones (1: every reading is "
                                                                 "checked).")
    surprise_steps: float = Field(1.0, ge=0, description="A reading more than this many register steps beyond the "
                                                         "expected register (neighbours + the meter's typical "
                                                         "power) needs independent evidence before it is "
                                                         "published.")
    witnesses: int = Field(2, ge=1, description="Distinct values (own included) that a surprising reading needs "
                                                "before it is published: repeated photos of a drum that has not "
                                                "moved are one witness.")
    first_confidence: float = Field(0.95, ge=0, le=1, description="A meter's first reading (no accepted reading "
                                                                  "before or after it to check it against) is "
                                                                  "published only with every digit read at this "
                                                                  "confidence or more; the "
                                                                  "less sure ones wait for it (docs/validation.md).")
    typical_power_margin: float = Field(1.5, ge=1, description="The typical power is the highest hourly rate of "
                                                               "the last day's readings times this.")
    initial_power_w: float = Field(3000.0, gt=0, description="The typical power assumed until 6 h of readings "
                                                             "show the meter's own, W.")


class AdapterSettings(Section):
    enabled: bool = Field(True, description="Learn each meter's digits from its validated photos and read with "
                                            "them (docs/adapter.md); False = the shipped model alone.")
    max_examples: int = Field(2000, ge=10, le=100000, description="Labelled digit crops kept per meter in the "
                                                                  "database (the newest tenth of this per digit; "
                                                                  "about 0.5 KB each, compressed).")


class WorkerSettings(Section):
    poll_interval_s: float = Field(30.0, gt=0, description="Seconds between polls of the image store.")
    batch_size: int = Field(256, ge=1, description="Photos read per batch.")
    read_threads: int = Field(2, ge=1, description="Threads decoding, aligning and reading photos in parallel "
                                                   "(OpenCV and the CNN runtime release the GIL).")
    analyse_every_s: float = Field(0.0, ge=0, description="Run the scheduled analysis (events, the blackout/"
                                                          "superamento state) this often inside the worker, s; "
                                                          "0 = off (run 'smartmeter analyse --every 5m' instead).")


class SpoolSettings(Section):
    dir: Path = Field(Path("var/spool"), description="Photos wait here until uploaded.")
    max_mb: float = Field(500.0, gt=0, description="Past this size the oldest backlog is thinned (one photo an "
                                                   "hour, then a day), MB.")
    min_free_mb: float = Field(50.0, ge=0, description="Disk space kept free on the spool's disk: below it the "
                                                       "backlog is thinned as if over the cap, MB.")


class UploaderSettings(Section):
    idle_s: float = Field(5.0, gt=0, description="Seconds between spool checks when idle.")
    max_backoff_s: float = Field(300.0, gt=0, description="Longest wait between retries while the store fails, s.")


class HealthSettings(Section):
    file: Path = Field(Path("var/camera-health.json"), description="Heartbeat file written by the daemon.")
    port: int | None = Field(8765, ge=0, le=65535, description="Local HTTP health endpoint port (GET /health); "
                                                               "None = off, 0 = any free.")
    host: str = Field("127.0.0.1", description="Address the health endpoint listens on.")


# camera.<old flat key> (before the split) -> (section, key): old settings files keep working, with a warning
CAMERA_RENAMED = {"spool_dir": ("spool", "dir"), "spool_max_mb": ("spool", "max_mb"),
                  "spool_min_free_mb": ("spool", "min_free_mb"), "upload_idle_s": ("uploader", "idle_s"),
                  "upload_max_backoff_s": ("uploader", "max_backoff_s"), "health_file": ("health", "file"),
                  "health_port": ("health", "port"), "health_host": ("health", "host")}


class CameraSettings(Section):
    backend: Literal["picamera2", "opencv", "replay", "sim"] = Field(
        "picamera2", description="Camera: picamera2 (Pi camera) | opencv (USB webcam) | replay (a folder of photos) "
                                 "| sim (simulated meter).")
    meter_id: str = Field("meter1", description="Meter id written into photo names.")
    interval_s: float = Field(60.0, gt=0, description="Seconds between photos, aligned to the clock (60 = on "
                                                      "every minute); ignored when ``schedule`` is set.")
    schedule: str | None = Field(None, description="Cron-like 'minute hour day month weekday' (e.g. '*/5 * * * *', "
                                                   "'0 6-22 * * *'), UTC; None = every interval_s.")
    require_clock_sync: bool = Field(True, description="Take no photo until the kernel says the clock is "
                                                       "synchronised (a Pi has no real-time clock).")
    max_failed_shots: int = Field(10, ge=1, description="This many failed shots in a row end the daemon with an "
                                                        "error (systemd restarts it).")
    capture_timeout_s: float = Field(120.0, gt=0, description="A shot running longer than this counts as hung: the "
                                                              "systemd watchdog is no longer pinged.")
    jpeg_quality: int = Field(90, ge=50, le=100, description="JPEG quality of saved photos.")
    device: int = Field(0, ge=0, description="OpenCV camera index (opencv backend).")
    camera_num: int = Field(0, ge=0, description="Pi camera number (picamera2 backend).")
    flash_gpio: int | None = Field(None, description="GPIO pin of an LED lit during capture, if any.")
    width: int = Field(1640, ge=64, description="Photo width, pixels.")
    height: int = Field(1232, ge=64, description="Photo height, pixels.")
    exposure_us: int | None = Field(None, ge=1, description="Fixed exposure time (picamera2), microseconds; "
                                                            "None = automatic.")
    analogue_gain: float | None = Field(None, ge=1, description="Fixed analogue gain with exposure_us (picamera2); "
                                                                "None = chosen by the camera.")
    lens_position: float | None = Field(None, ge=0, description="Fixed focus (picamera2 LensPosition, dioptres); "
                                                                "None = autofocus on a camera that has it.")
    autofocus: Literal["each-shot", "continuous"] = Field(
        "each-shot", description="Autofocus without lens_position: an AF cycle before each shot, or continuous AF.")
    settle_s: float = Field(1.0, ge=0, description="Seconds to let exposure settle after the camera starts.")
    replay_dir: Path | None = Field(None, description="Replay backend: folder of .jpg photos shown in name order.")
    replay_loop: bool = Field(False, description="Replay backend: start over at the end (else shots fail).")
    sim_start_kwh: float = Field(12345.6, ge=0, description="Sim backend: register value at start, kWh.")
    sim_power_w: float = Field(800.0, ge=0, description="Sim backend: constant power driving the register, W.")
    spool: SpoolSettings = Field(default_factory=SpoolSettings, description="The photo spool on the Pi.")
    uploader: UploaderSettings = Field(default_factory=UploaderSettings, description="Spool -> image store.")
    health: HealthSettings = Field(default_factory=HealthSettings, description="Heartbeat file and /health.")

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not CAMERA_RENAMED.keys() & data.keys():
            return data
        data = dict(data)
        for old in sorted(CAMERA_RENAMED.keys() & data.keys()):
            section, key = CAMERA_RENAMED[old]
            sub = dict(data.get(section) or {})
            sub.setdefault(key, data.pop(old))
            data[section] = sub
            log.warning("settings: camera.%s is now camera.%s.%s", old, section, key)
        return data


class BackupSettings(Section):
    keep_days: float = Field(7.0, ge=0, description="`backup --delete-after` when the readings database cannot be "
                             "asked which photos the worker processed: photos stored in the last this many days stay "
                             "in the image store, days.")


class ApiSettings(Section):
    host: str = Field("127.0.0.1", description="Address the HTTP API and dashboard listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API and dashboard.")


class WebSettings(Section):
    stream_intervals_s: list[int] = Field([1, 5, 10, 15, 30, 60, 300, 900], min_length=1,
                                          description="Intervals a live stream (GET /api/stream) may average "
                                                      "over, seconds.")
    heartbeat_s: float = Field(15.0, gt=0, description="An idle live stream sends a comment this often so "
                                                       "proxies keep it open, s.")
    page_limit: int = Field(5000, ge=1, le=100000, description="Most readings one GET .../readings page holds "
                                                                "(the default page is smaller); the rest by cursor.")
    max_points: int = Field(5000, ge=10, description="Most buckets one power series may have.")
    db_connections: int = Field(8, ge=1, le=64, description="Database connections the API keeps for requests "
                                                            "(one request uses one; SQLite reads run in parallel).")


class AuthSettings(Section):
    open_read_networks: list[str] = Field(default_factory=list,
                                          description="Client networks (CIDR, e.g. 192.168.1.0/24) that may view "
                                                      "the dashboard and read the API without logging in; writes "
                                                      "always need the token or a login. Empty = everyone logs in.")
    session_hours: float = Field(168.0, gt=0, description="A login lasts this long without use, hours.")
    secure_cookie: bool = Field(False, description="Send the session cookie only over HTTPS (set behind a TLS "
                                                   "proxy).")

    @field_validator("open_read_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a network: {net!r} (e.g. 192.168.1.0/24)") from exc
        return value


class MqttSettings(Section):
    enabled: bool = Field(False, description="Subscribe to meter readings over MQTT.")
    host: str = Field("127.0.0.1", description="MQTT broker host.")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port.")
    topic: str = Field("smartmeter/+/reading", description="Topic filter; '+' is the meter id.")
    username: str | None = Field(None, description="Username; password from SMARTMETER_MQTT_PASSWORD(_FILE).")
    client_id: str = Field("smartmeter-server", description="MQTT client id.")


class AnalysisSettings(Section):
    power_threshold_w: float = Field(3000.0, gt=0, description="Power at or above this is 'superamento' (the "
                                                                "original system's 3 kW), W.")
    energy_threshold_kwh_day: float = Field(12.0, gt=0, description="Alert when a local day's energy exceeds this "
                                                                    "(the original LARI rule: 12 kWh), kWh.")
    blackout_min_s: float = Field(300.0, gt=0, description="Zero power at least this long counts as a blackout, s.")
    stale_camera_s: float = Field(1800.0, gt=0, description="No photo for this long marks the camera stale, s.")
    long_load_w: float = Field(1500.0, gt=0, description="A load this far above the base load, W, running ...")
    long_load_s: float = Field(7200.0, gt=0, description="... without a break for this long is reported as a "
                                                         "long load (e.g. a heater left on), s.")
    gap_s: float = Field(900.0, gt=0, description="Readings further apart than this leave a gap: power across it "
                                                  "is an average, never a spike, s.")
    blackout_steps: float = Field(3.0, gt=0, description="Camera meters: no register step for this many times "
                                                         "the step time at the base load, while photos keep "
                                                         "arriving, is a blackout.")
    unusual_mad: float = Field(5.0, gt=0, description="An hour this many robust deviations (MAD x 1.4826) above "
                                                      "the median of the same hour of week is unusual.")
    unusual_min_kwh: float = Field(0.5, ge=0, description="... and at least this much above that median, kWh.")
    baseline_weeks: int = Field(8, ge=2, description="Past weeks the hour-of-week baseline is taken from.")
    state_topic: str = Field("", description="MQTT topic ('{meter}': the meter id, e.g. smartmeter/{meter}/state) "
                                             "that gets each meter's {'blackout', 'superamento'} state, retained, "
                                             "whenever the analysis changes it (the broker: the mqtt section; "
                                             "sent from the alert outbox by `smartmeter alerts`); empty: off.")
    baseload_shift_w: float = Field(50.0, gt=0, description="The base load (a week's median of daily base loads) "
                                                             "moving by more than this from the previous four "
                                                             "weeks is a baseload shift, W.")


class Settings(Section):
    """Root of the settings tree (``smartmeter.yaml``)."""

    store: StoreSettings = Field(default_factory=StoreSettings, description="Image store.")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings, description="Readings database.")
    ocr: OcrSettings = Field(default_factory=OcrSettings, description="Reading digits.")
    meters: list[MeterSettings] = Field(default_factory=list, description="Known meters.")
    validation: ValidationSettings = Field(default_factory=ValidationSettings, description="Cross-frame checks.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="Bounds on every reading stored.")
    worker: WorkerSettings = Field(default_factory=WorkerSettings, description="Server worker loop.")
    adapter: AdapterSettings = Field(default_factory=AdapterSettings, description="Per-meter digit adapter.")
    camera: CameraSettings = Field(default_factory=CameraSettings, description="Raspberry Pi camera daemon.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="HTTP API and dashboard.")
    web: WebSettings = Field(default_factory=WebSettings, description="Dashboard, live stream and API limits.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Who may read and write over HTTP.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="MQTT ingest.")
    backup: BackupSettings = Field(default_factory=BackupSettings, description="Backup tool.")
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings, description="Anomaly thresholds.")
    billing: BillingSettings = Field(default_factory=BillingSettings, description="Tariffs and invoices.")
    alerts: AlertsSettings = Field(default_factory=AlertsSettings, description="Alert rules and channels.")
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings,
                                                 description="Home Assistant MQTT discovery.")

    def meter(self, meter_id: str) -> MeterSettings:
        """Settings of one meter; unknown meters get the defaults."""
        for m in self.meters:
            if m.id == meter_id:
                return m
        return MeterSettings(id=meter_id)


def parse_settings(text: str, source: str = "<settings>") -> Settings:
    """Parse YAML text into Settings; every failure is one ConfigError naming key and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the settings file must be a mapping of sections")
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, where=source, node=node)) from exc


def load_settings(path: Path | str | None) -> Settings:
    """Load settings from a YAML file; None gives the embedded defaults (SQLite, local folder)."""
    if path is None:
        return Settings()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {p}: {exc.strerror}") from exc
    settings = parse_settings(text, str(p))
    log.debug("settings loaded from %s", p)
    return settings
