"""The meter setup page: a reference photo, auto-locate's proposal, boxes edited by hand, the reading live, the
setup reading confirmed once, and the profile saved as the YAML ``smartmeter read --profile`` uses.

- ``GET  /meters/{id}/setup`` — the page (``server/static/setup.js`` draws the boxes on an SVG over the photo).
- ``GET  /api/meters/{id}/setup`` — the meter's profile as the page edits it (``rotate``, ``flip``, ``kind``,
  ``decimals``, ``digits``, ``pointers``; defaults when it has none yet), whether a photo is loaded, and
  ``confirm_hint``: the fix (confirm the register once) when the worker has stored no reading of the meter from
  ``validation.confirm_hint_photos`` photos, else null.
- ``POST /api/meters/{id}/setup/photo`` — the reference photo: the JPEG/PNG bytes as the body, or
  ``?source=latest`` for the meter's latest stored photo. Kept in the readings database (``setup_photos``,
  migration 009) so a restarted server resumes the setup: at most ``MAX_PHOTO_BYTES`` each, the newest
  ``KEEP_PER_METER`` per meter (older ones pruned on upload); the newest is the one the page edits.
- ``GET  /api/meters/{id}/setup/photo.png?rotate=&flip=`` — that photo turned as the profile says.
- ``POST /api/meters/{id}/setup/propose`` — ``{"rotate", "flip"}`` -> the digit boxes auto-locate proposes.
- ``POST /api/meters/{id}/setup/read`` — the edited profile -> the reading of the photo with it, per box.
- ``POST /api/meters/{id}/setup/save`` — the edited profile written to the meter's ``meters[].profile`` path,
  with the turned photo beside it as its reference (``<stem>-reference.png``); the file's other keys kept.
- ``POST /api/meters/{id}/setup/confirm`` — ``{"reading": "012345.6"}``: ``smartmeter meter confirm`` on the
  latest photo (a trusted reading that anchors validation and labels the digits).

Photo, save and confirm are writes (token, or a login with the CSRF token); the rest need viewing rights.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smartmeter.errors import ConfigError, InputError, NotFoundError, SmartMeterError
from smartmeter.ocr.image_io import decode_image
from smartmeter.ocr.profile import Box, Profile, Transform, load_profile
from smartmeter.ocr.transforms import apply_transform, transformed_size
from smartmeter.server import photos_repo
from smartmeter.server.database import Database, now_ms
from smartmeter.server.payloads import check_meter_id, decode_json
from smartmeter.server.web.context import BadParameter, Web, known_meter, read_body
from smartmeter.validation_errors import describe

MAX_PHOTO_BYTES = 20_000_000
KEEP_PER_METER = 3
MAX_CACHED = 8  # meters whose newest setup photo is also held in memory (the page asks for it on every edit)


class Draft(BaseModel):
    """The part of a profile the setup page edits."""

    model_config = ConfigDict(extra="forbid")

    rotate: float = Field(0.0, ge=-360, le=360, description="Degrees counter-clockwise (profile transform.rotate).")
    flip: Literal["none", "horizontal", "vertical", "both"] = Field("none", description="Mirroring after rotating.")
    kind: Literal["drum", "lcd"] = Field("drum", description="Rolling drums or a seven-segment LCD.")
    decimals: int = Field(0, ge=0, le=6, description="Positions after the decimal point.")
    digits: list[Box] = Field(..., min_length=1, max_length=16, description="Digit boxes [x, y, w, h].")
    pointers: list[Box] = Field(default_factory=list, max_length=8, description="Pointer boxes [x, y, w, h].")

    def profile(self, base: Profile | None, meter_id: str) -> Profile:
        data: dict[str, Any] = (base.model_dump(exclude_none=True, exclude={"reference", "reader"}) if base is not None
                                else {"meter": meter_id})
        data.update(kind=self.kind, decimals=self.decimals, digits=self.digits, pointers=self.pointers,
                    transform={"rotate": self.rotate, "flip": self.flip})
        if base is not None and base.dials.directions and len(base.dials.directions) != len(self.pointers):
            data["dials"] = {**data.get("dials", {}), "directions": []}
        try:
            prof = Profile.model_validate(data)
        except ValidationError as exc:
            raise BadParameter(describe(exc, root="profile")) from exc
        if base is not None and "min_confidence" not in base.model_fields_set:
            prof.model_fields_set.discard("min_confidence")  # the reader configuration's threshold stays in effect
        if base is not None and base.reader is not None:
            prof = prof.model_copy(update={"reader": base.reader})  # as written: only the keys chosen
        return prof


def draft_of(raw: bytes) -> Draft:
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise BadParameter("body: must be an object with digits, pointers, rotate, flip, decimals, kind")
    try:
        return Draft.model_validate(data)
    except ValidationError as exc:
        raise BadParameter(describe(exc, root="body")) from exc


class Setup:
    """The setup photos (in ``setup_photos``; the newest per meter cached in memory) and a digit reader per
    thread."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.cache: OrderedDict[str, tuple[int, bytes]] = OrderedDict()  # meter -> (seq, bytes) of its newest
        self.lock = threading.Lock()
        self.local = threading.local()

    @staticmethod
    def newest(db: Database, meter_id: str) -> int | None:
        """The seq of the meter's newest setup photo, None when it has none."""
        rows = db.query("SELECT MAX(seq) FROM setup_photos WHERE meter_id = ?", (meter_id,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def _remember(self, meter_id: str, seq: int, data: bytes) -> None:
        with self.lock:
            self.cache[meter_id] = (seq, data)
            self.cache.move_to_end(meter_id)
            while len(self.cache) > MAX_CACHED:
                self.cache.popitem(last=False)

    def photo(self, db: Database, meter_id: str) -> bytes:
        """The bytes of the meter's newest setup photo (from memory when it is still the newest stored)."""
        seq = self.newest(db, meter_id)
        if seq is None:
            raise NotFoundError(f"no setup photo for meter {meter_id!r}",
                                hint="upload one (POST .../setup/photo) or take the latest (?source=latest)")
        with self.lock:
            cached = self.cache.get(meter_id)
        if cached is not None and cached[0] == seq:
            return cached[1]
        rows = db.query("SELECT data FROM setup_photos WHERE meter_id = ? AND seq = ?", (meter_id, seq))
        if not rows:  # pruned by another server's upload just now: that one is the newest
            return self.photo(db, meter_id)
        data = bytes(rows[0][0])
        self._remember(meter_id, seq, data)
        return data

    def keep(self, db: Database, meter_id: str, data: bytes) -> np.ndarray:
        """Store ``data`` as the meter's newest setup photo (a whole image only) and prune the older ones."""
        image = decode_image(data, "the uploaded photo")  # ImageError (400) when it is not a whole image
        with db.transaction():
            seq = (self.newest(db, meter_id) or 0) + 1
            db.execute("INSERT INTO setup_photos (meter_id, seq, sha256, bytes, data, uploaded_ms) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (meter_id, seq, hashlib.sha256(data).hexdigest(), len(data), data, now_ms()))
            db.execute("DELETE FROM setup_photos WHERE meter_id = ? AND seq <= ?", (meter_id, seq - KEEP_PER_METER))
        self._remember(meter_id, seq, data)
        return image

    def turned(self, db: Database, meter_id: str, transform: Transform) -> np.ndarray:
        return apply_transform(decode_image(self.photo(db, meter_id), "the setup photo"), transform)

    def existing(self, meter_id: str) -> Profile | None:
        path = self.web.settings.meter(meter_id).profile
        if path is None or not path.exists():
            return None
        try:
            return load_profile(path)
        except ConfigError:
            return None  # a broken file is replaced by what the page saves

    def read(self, db: Database, meter_id: str, profile: Profile) -> dict[str, Any]:
        from smartmeter.ocr.cli_profile import box_problems
        from smartmeter.ocr.pipeline import MeterReader
        from smartmeter.ocr.readers.config import open_reader, resolve_reader, with_threshold

        photo = self.photo(db, meter_id)
        h, w = decode_image(photo, "the setup photo", grey=True).shape[:2]
        inside(profile, *transformed_size(w, h, profile.transform))
        config = resolve_reader(self.web.settings.ocr, profile)
        engines: dict[Any, Any] = self.local.__dict__.setdefault("engines", {})
        if config not in engines:
            engines[config] = open_reader(config)
        prof = with_threshold(profile, config)
        result = MeterReader(prof, engines[config]).read(photo, "setup photo")
        boxes = [{"name": name, "box": list(box), "value": None if v is None else v.value,
                  "confidence": None if v is None else round(v.confidence, 3), "problems": problems}
                 for name, box, v, problems in box_problems(prof, result)]
        return {"reading": result.reading, "value": result.value, "confidence": round(result.confidence, 3),
                "error": result.error, "boxes": boxes}


def inside(profile: Profile, w: int, h: int) -> None:
    """422 unless every box lies inside the ``w`` x ``h`` turned photo (a huge box would cost a huge crop)."""
    for x, y, bw, bh in [*profile.digits, *profile.pointers]:
        if x + bw > w or y + bh > h:
            raise BadParameter(f"box {[x, y, bw, bh]} falls outside the {w}x{h} photo",
                               hint="boxes are in the pixels of the photo turned as the profile says")


def save_profile(path: Path, profile: Profile, reference: np.ndarray) -> Path:
    """Write the turned reference beside ``path`` and the profile naming it, each atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ref = path.with_name(path.stem + "-reference.png")
    ok, png = cv2.imencode(".png", reference)
    if not ok:
        raise ConfigError(f"cannot encode the reference image for {ref}")
    text = profile.model_copy(update={"reference": Path(ref.name)}).to_yaml()
    for target, data in ((ref, png.tobytes()), (path, text.encode())):
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return ref


# The bodies the routes read themselves (bounded), declared for the OpenAPI schema.
_PHOTO_DOC: dict[str, Any] = {"requestBody": {"required": False, "content": {
    m: {"schema": {"type": "string", "format": "binary"}} for m in ("image/jpeg", "image/png")}}}
_PROPOSE_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "rotate": {"type": "number", "minimum": -360, "maximum": 360, "description": "Degrees counter-clockwise."},
    "flip": {"type": "string", "enum": ["none", "horizontal", "vertical", "both"]}}}
_CONFIRM_SCHEMA: dict[str, Any] = {"type": "object", "required": ["reading"], "properties": {
    "reading": {"type": "string", "description": "The register as the meter shows it, e.g. 012345.6."}}}


def _json_doc(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


def add_setup_routes(app: FastAPI, web: Web, page: Any) -> None:
    setup = Setup(web)
    settings = web.settings

    def transform_of(rotate: float, flip: str) -> Transform:
        try:
            return Transform(rotate=rotate, flip=flip)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise BadParameter(describe(exc)) from exc

    async def meter_known(meter_id: str) -> None:
        check_meter_id(meter_id)
        await web.run(lambda db: known_meter(db, meter_id))

    @app.get("/meters/{meter_id}/setup", response_class=HTMLResponse, include_in_schema=False)
    async def setup_page(meter_id: str, request: Request) -> Response:
        p = await web.principal(request)
        if p is None:
            return RedirectResponse("/login", status_code=303)
        check_meter_id(meter_id)
        p.check_meter(meter_id)
        await meter_known(meter_id)
        return page("setup.html", user=p.name, meter=meter_id, csrf=p.csrf or "", can_write=p.can_write,
                    profile_path=str(settings.meter(meter_id).profile or ""))

    @app.get("/api/meters/{meter_id}/setup")
    async def setup_state(meter_id: str, request: Request) -> dict[str, Any]:
        """The meter's profile as the setup page edits it, whether a setup photo is loaded, and the hint to confirm
        the register when the worker has stored no reading of the meter from many photos (``confirm_hint``)."""
        await web.reader(request, meter_id)
        await meter_known(meter_id)
        prof = setup.existing(meter_id)
        has_photo = await web.run(lambda db: setup.newest(db, meter_id) is not None)
        from smartmeter.server.setup_reading import confirm_hint

        hint = await web.run(lambda db: confirm_hint(db, settings, meter_id))
        path = settings.meter(meter_id).profile
        draft = None if prof is None else {
            "rotate": prof.transform.rotate, "flip": prof.transform.flip, "kind": prof.kind,
            "decimals": prof.decimals, "digits": [list(b) for b in prof.digits],
            "pointers": [list(b) for b in prof.pointers]}
        return {"meter_id": meter_id, "profile_path": None if path is None else str(path), "profile": draft,
                "photo": has_photo, "confirm_hint": hint}

    @app.post("/api/meters/{meter_id}/setup/photo", openapi_extra=_PHOTO_DOC)
    async def setup_photo(meter_id: str, request: Request, source: str | None = None) -> dict[str, Any]:
        """The reference photo: JPEG/PNG bytes as the body, or ``?source=latest`` (the meter's latest photo)."""
        await web.writer(request, meter_id)
        await meter_known(meter_id)
        if source not in (None, "latest"):
            raise BadParameter(f"source: {source[:40]!r} is not 'latest' (or send the photo as the body)")
        if source == "latest":
            def latest_key(db: Database) -> str:
                row = photos_repo.latest(db, meter_id)
                if row is None:
                    raise NotFoundError(f"meter {meter_id!r} has no photos", hint="upload a photo instead")
                return str(row["key"])

            key = await web.run(latest_key)

            def load() -> bytes:
                from smartmeter.store import open_store

                return open_store(settings.store).get(key)

            data = await web.run(lambda _db: load())
        else:
            data = await read_body(request, MAX_PHOTO_BYTES, "photo")
            if not data:
                raise InputError("the body is empty: send the photo's bytes, or use ?source=latest")
        image = await web.run(lambda db: setup.keep(db, meter_id, data))
        h, w = image.shape[:2]
        return {"meter_id": meter_id, "width": w, "height": h, "bytes": len(data), "source": source or "upload"}

    @app.get("/api/meters/{meter_id}/setup/photo.png", response_class=Response)
    async def setup_photo_png(meter_id: str, request: Request, rotate: float = 0.0, flip: str = "none") -> Response:
        """The setup photo turned by ``rotate`` (degrees counter-clockwise) and ``flip``, as PNG."""
        check_meter_id(meter_id)
        await web.reader(request, meter_id)
        transform = transform_of(rotate, flip)
        turned = await web.run(lambda db: setup.turned(db, meter_id, transform))
        ok, png = cv2.imencode(".png", turned)
        if not ok:
            raise InputError("the turned photo cannot be encoded")
        return Response(png.tobytes(), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/api/meters/{meter_id}/setup/propose", openapi_extra=_json_doc(_PROPOSE_SCHEMA, required=False))
    async def setup_propose(meter_id: str, request: Request) -> dict[str, Any]:
        """Auto-locate's digit boxes in the setup photo turned by ``{"rotate", "flip"}`` (none found: [])."""
        check_meter_id(meter_id)
        await web.reader(request, meter_id)
        data = decode_json(await read_body(request, 10_000) or b"{}")
        if not isinstance(data, dict):
            raise BadParameter("body: must be an object {rotate, flip}")
        try:
            transform = transform_of(float(data.get("rotate", 0.0)), str(data.get("flip", "none")))
        except (TypeError, ValueError) as exc:
            raise BadParameter(f"rotate: {exc}") from exc

        def propose(db: Database) -> list[Box] | None:
            from smartmeter.ocr.cli_profile import _locate_digits

            return _locate_digits(setup.turned(db, meter_id, transform))

        boxes = await web.run(propose)
        return {"meter_id": meter_id, "located": boxes is not None, "digits": [list(b) for b in boxes or []]}

    @app.post("/api/meters/{meter_id}/setup/read", openapi_extra=_json_doc(Draft.model_json_schema()))
    async def setup_read(meter_id: str, request: Request) -> dict[str, Any]:
        """Read the setup photo with the edited profile: the reading (or why none), each box's value."""
        check_meter_id(meter_id)
        await web.reader(request, meter_id)
        draft = draft_of(await read_body(request, 100_000))
        prof = draft.profile(setup.existing(meter_id), meter_id)
        return await web.run(lambda db: setup.read(db, meter_id, prof))

    @app.post("/api/meters/{meter_id}/setup/save", openapi_extra=_json_doc(Draft.model_json_schema()))
    async def setup_save(meter_id: str, request: Request) -> dict[str, Any]:
        """Save the edited profile to the meter's profile path, the turned setup photo as its reference."""
        await web.writer(request, meter_id)
        await meter_known(meter_id)
        draft = draft_of(await read_body(request, 100_000))
        path = settings.meter(meter_id).profile
        if path is None:
            raise NoProfilePath(f"meter {meter_id!r} has no profile path in the settings",
                                hint="set meters[].profile to where its profile YAML goes, then save again")
        prof = draft.profile(setup.existing(meter_id), meter_id)

        def save(db: Database) -> dict[str, Any]:
            turned = setup.turned(db, meter_id, prof.transform)
            inside(prof, turned.shape[1], turned.shape[0])
            ref = save_profile(path, prof, turned)
            load_profile(path)  # what we wrote loads
            return {"meter_id": meter_id, "profile": str(path), "reference": str(ref),
                    "yaml": path.read_text(encoding="utf-8")}

        return await web.run(save)

    @app.post("/api/meters/{meter_id}/setup/confirm", openapi_extra=_json_doc(_CONFIRM_SCHEMA))
    async def setup_confirm(meter_id: str, request: Request) -> dict[str, Any]:
        """``{"reading": "012345.6"}``: confirm the register once on the latest photo (``meter confirm``)."""
        await web.writer(request, meter_id)
        await meter_known(meter_id)
        data = decode_json(await read_body(request, 10_000))
        reading = data.get("reading") if isinstance(data, dict) else None
        if not isinstance(reading, str):
            raise BadParameter('reading: send {"reading": "012345.6"}, the register as the meter shows it')

        def run(db: Database) -> dict[str, Any]:
            from smartmeter.server.setup_reading import confirm

            try:
                key, added, dropped = confirm(db, settings, meter_id, reading, None)
            except ConfigError as exc:
                raise NoProfilePath(exc.message, hint=exc.hint) from exc
            return {"meter_id": meter_id, "photo": key, "reading": reading, "labelled": added, "dropped": dropped}

        return await web.run(run)


class NoProfilePath(SmartMeterError):
    """The meter's settings name no usable profile: nothing to save to or read with."""

    http_status = 409
