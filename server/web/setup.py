"""The meter setup page: a reference photo, auto-locate's proposal, boxes edited by hand, the reading live, the
setup reading confirmed once, and the profile saved as the YAML ``smartmeter read --profile`` uses.

- ``GET  /meters/{id}/setup`` — the page (``server/static/setup.js`` draws the boxes on an SVG over the photo).
- ``GET  /api/meters/{id}/setup`` — the meter's profile as the page edits it (``rotate``, ``flip``, ``kind``,
  ``decimals``, ``digits``, ``pointers``; defaults when it has none yet) and whether a photo is loaded.
- ``POST /api/meters/{id}/setup/photo`` — the reference photo: the JPEG/PNG bytes as the body, or
  ``?source=latest`` for the meter's latest stored photo. Kept in memory until saved.
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

import os
import threading
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
from smartmeter.server.database import Database
from smartmeter.server.payloads import check_meter_id, decode_json
from smartmeter.server.web.context import BadParameter, Web, known_meter, read_body
from smartmeter.validation_errors import describe

MAX_PHOTO_BYTES = 20_000_000
MAX_DRAFTS = 32


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
    """The photos being set up (one per meter, in memory) and a digit reader per thread."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.photos: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.local = threading.local()

    def photo(self, meter_id: str) -> bytes:
        with self.lock:
            data = self.photos.get(meter_id)
        if data is None:
            raise NotFoundError(f"no setup photo for meter {meter_id!r}",
                                hint="upload one (POST .../setup/photo) or take the latest (?source=latest)")
        return data

    def keep(self, meter_id: str, data: bytes) -> np.ndarray:
        image = decode_image(data, "the uploaded photo")  # ImageError (400) when it is not a whole image
        with self.lock:
            self.photos.pop(meter_id, None)
            while len(self.photos) >= MAX_DRAFTS:
                self.photos.pop(next(iter(self.photos)))
            self.photos[meter_id] = data
        return image

    def turned(self, meter_id: str, transform: Transform) -> np.ndarray:
        return apply_transform(decode_image(self.photo(meter_id), "the setup photo"), transform)

    def existing(self, meter_id: str) -> Profile | None:
        path = self.web.settings.meter(meter_id).profile
        if path is None or not path.exists():
            return None
        try:
            return load_profile(path)
        except ConfigError:
            return None  # a broken file is replaced by what the page saves

    def read(self, meter_id: str, profile: Profile) -> dict[str, Any]:
        from smartmeter.ocr.cli_profile import box_problems
        from smartmeter.ocr.pipeline import MeterReader
        from smartmeter.ocr.readers.config import open_reader, resolve_reader, with_threshold

        photo = self.photo(meter_id)
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
        """The meter's profile as the setup page edits it, and whether a setup photo is loaded."""
        await web.reader(request, meter_id)
        await meter_known(meter_id)
        prof = setup.existing(meter_id)
        with setup.lock:
            has_photo = meter_id in setup.photos
        path = settings.meter(meter_id).profile
        draft = None if prof is None else {
            "rotate": prof.transform.rotate, "flip": prof.transform.flip, "kind": prof.kind,
            "decimals": prof.decimals, "digits": [list(b) for b in prof.digits],
            "pointers": [list(b) for b in prof.pointers]}
        return {"meter_id": meter_id, "profile_path": None if path is None else str(path), "profile": draft,
                "photo": has_photo}

    @app.post("/api/meters/{meter_id}/setup/photo")
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
        image = await web.run(lambda _db: setup.keep(meter_id, data))
        h, w = image.shape[:2]
        return {"meter_id": meter_id, "width": w, "height": h, "bytes": len(data), "source": source or "upload"}

    @app.get("/api/meters/{meter_id}/setup/photo.png", response_class=Response)
    async def setup_photo_png(meter_id: str, request: Request, rotate: float = 0.0, flip: str = "none") -> Response:
        """The setup photo turned by ``rotate`` (degrees counter-clockwise) and ``flip``, as PNG."""
        check_meter_id(meter_id)
        await web.reader(request, meter_id)
        transform = transform_of(rotate, flip)
        turned = await web.run(lambda _db: setup.turned(meter_id, transform))
        ok, png = cv2.imencode(".png", turned)
        if not ok:
            raise InputError("the turned photo cannot be encoded")
        return Response(png.tobytes(), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/api/meters/{meter_id}/setup/propose")
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

        def propose(_db: Database) -> list[Box] | None:
            from smartmeter.ocr.cli_profile import _locate_digits

            return _locate_digits(setup.turned(meter_id, transform))

        boxes = await web.run(propose)
        return {"meter_id": meter_id, "located": boxes is not None, "digits": [list(b) for b in boxes or []]}

    @app.post("/api/meters/{meter_id}/setup/read")
    async def setup_read(meter_id: str, request: Request) -> dict[str, Any]:
        """Read the setup photo with the edited profile: the reading (or why none), each box's value."""
        check_meter_id(meter_id)
        await web.reader(request, meter_id)
        draft = draft_of(await read_body(request, 100_000))
        prof = draft.profile(setup.existing(meter_id), meter_id)
        return await web.run(lambda _db: setup.read(meter_id, prof))

    @app.post("/api/meters/{meter_id}/setup/save")
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

        def save(_db: Database) -> dict[str, Any]:
            turned = setup.turned(meter_id, prof.transform)
            inside(prof, turned.shape[1], turned.shape[0])
            ref = save_profile(path, prof, turned)
            load_profile(path)  # what we wrote loads
            return {"meter_id": meter_id, "profile": str(path), "reference": str(ref),
                    "yaml": path.read_text(encoding="utf-8")}

        return await web.run(save)

    @app.post("/api/meters/{meter_id}/setup/confirm")
    async def setup_confirm(meter_id: str, request: Request) -> dict[str, Any]:
        """``{"reading": "012345.6"}``: confirm the register once on the latest photo (``meter confirm``)."""
        await web.writer(request, meter_id)
        await meter_known(meter_id)
        data = decode_json(await read_body(request, 10_000))
        reading = data.get("reading") if isinstance(data, dict) else None
        if not isinstance(reading, str):
            raise BadParameter('reading: send {"reading": "012345.6"}, the register as the meter shows it')

        def run(db: Database) -> dict[str, Any]:
            from smartmeter.server.cli_meter import confirm

            try:
                key, added, dropped = confirm(db, settings, meter_id, reading, None)
            except ConfigError as exc:
                raise NoProfilePath(exc.message, hint=exc.hint) from exc
            return {"meter_id": meter_id, "photo": key, "reading": reading, "labelled": added, "dropped": dropped}

        return await web.run(run)


class NoProfilePath(SmartMeterError):
    """The meter's settings name no usable profile: nothing to save to or read with."""

    http_status = 409
