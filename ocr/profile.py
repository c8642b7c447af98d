"""Meter profile: how to turn one installation's photo into digit crops.

A profile is a YAML file (see ``examples/meter-profile.yaml``). Coordinates are pixels in the *reference image*,
i.e. the photo after the profile's transforms (rotate, flip). When ``reference`` is set, each photo is first
aligned to it so a slightly moved camera still reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from smartmeter.errors import ConfigError
from smartmeter.ocr.assemble import CouplingName, RightmostCoupling
from smartmeter.settings import ReaderSettings, validate_reader
from smartmeter.validation_errors import describe

Box = tuple[int, int, int, int]


class Transform(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rotate: float = Field(0.0, description="Rotate the photo by this many degrees, counter-clockwise (any angle).")
    flip: Literal["none", "horizontal", "vertical", "both"] = Field(
        "none", description="Mirror the photo (after rotating): installations that look through a mirror.")


class Alignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["auto", "none", "template"] = Field(
        "auto", description="How to align a photo to the reference: auto (phase correlation, then ORB features + "
                            "homography, then a template match of the digit region; the first trusted wins), "
                            "template (the template match only) or none. 'orb', the older name of auto, still reads.")
    max_shift_px: float = Field(80.0, gt=0, description="Reject alignments that move the image more than this "
                                                         "(reference pixels). Not set: an eighth of the reference's "
                                                         "long side, at least 80.")
    min_inliers: int = Field(12, ge=4, description="ORB: fewest matching features for a trusted homography.")
    track: bool = Field(True, description="Photos after the first: look first at where the last photo was found "
                                          "(two windows, sub-pixel check); the full search runs when that fails.")

    @field_validator("method", mode="before")
    @classmethod
    def _older_name(cls, value: object) -> object:
        """``orb`` named the whole chain (phase, ORB, template), not ORB alone: it is ``auto``."""
        return "auto" if value == "orb" else value


class Dials(BaseModel):
    """How the profile's pointer dials read (``docs/dials.md``)."""

    model_config = ConfigDict(extra="forbid")

    needle: Literal["red", "dark"] = Field("red", description="Needle colour: red (any red or orange needle; "
                                                              "needs colour photos) or dark (black, dark blue).")
    zero_degrees: float = Field(0.0, description="Where each dial's 0 points in the reference image, degrees "
                                                 "CLOCKWISE from straight up (a dial turned a little clockwise: "
                                                 "a small positive number).")
    directions: list[Literal["clockwise", "counterclockwise"]] = Field(
        default_factory=list, description="Which way each pointer's scale counts, one per pointer (water meters "
                                          "often alternate); empty: all clockwise.")


class Coupling(BaseModel):
    """How each position moves with its right neighbour at a transition (docs/transitions.md)."""

    model_config = ConfigDict(extra="forbid")

    drum: CouplingName = Field("roll", description="A drum beside the drum to its right: roll (only while that "
                                                   "one rolls 9->0: odometers), continuous (creeps along), either.")
    last_drum: CouplingName = Field(
        "either", description="The last drum beside the first pointer: either (creeps along on some meters, rolls "
                              "late on others: two different readings that both fit give none), roll, continuous.")
    pointer: CouplingName = Field("continuous", description="A pointer beside the pointer to its right (geared: "
                                                            "continuous).")
    rightmost: RightmostCoupling = Field(
        "auto", description="The rightmost box: continuous (a pointer, or the counter's last drum: it creeps), "
                            "roll (drums right of it are left out: it rests on whole digits); auto = roll for a "
                            "drum when decimals is 0, continuous for a pointer, and for a drum showing decimals "
                            "either (x.85-x.92 gives both candidates).")


class Profile(BaseModel):
    """One meter installation."""

    model_config = ConfigDict(extra="forbid")

    meter: str | None = Field(None, description="Meter id this profile belongs to (informational).")
    kind: Literal["drum", "lcd"] = Field("drum", description="Rolling-drum counter or seven-segment LCD.")
    unit: str = Field("kWh", description="Unit of the register.")
    reader: ReaderSettings | None = Field(None, description="Digit reader for this meter, over the settings' "
                                                             "ocr.reader: {engine: cnn | tesseract, ...} or just the "
                                                             "engine name; None = the settings' reader.")
    transform: Transform = Field(default_factory=Transform, description="Rotation and mirroring, applied first.")
    reference: Path | None = Field(None, description="Reference image (relative to the profile file) to align to.")
    alignment: Alignment = Field(default_factory=Alignment, description="Alignment to the reference image.")
    digits: list[Box] = Field(..., min_length=1, description="Digit boxes [x, y, w, h], most significant first.")
    decimals: int = Field(0, ge=0, description="How many of the last digits (and pointers) are after the point.")
    pointers: list[Box] = Field(default_factory=list,
                                description="Dial (pointer) boxes [x, y, w, h] read after the digits: square, "
                                            "centred on the needle's axis, just around the dial's scale.")
    dials: Dials = Field(default_factory=Dials, description="Needle colour, zero and direction of the pointers.")
    coupling: Coupling = Field(default_factory=Coupling,
                               description="How digits and pointers move with each other at a transition.")
    min_confidence: float = Field(0.5, ge=0, le=1, description="Digits below this confidence make the photo "
                                                               "unreadable. The reader configuration sets it; "
                                                               "written in the file, it overrides that (older "
                                                               "spelling of reader.min_confidence).")

    _reader = field_validator("reader", mode="wrap")(validate_reader)

    @field_validator("digits", "pointers")
    @classmethod
    def _positive_boxes(cls, boxes: list[Box]) -> list[Box]:
        for x, y, w, h in boxes:
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise ValueError(f"box {[x, y, w, h]} must have x, y >= 0 and w, h > 0")
        return boxes

    @model_validator(mode="after")
    def _one_direction_per_pointer(self) -> Profile:
        if self.dials.directions and len(self.dials.directions) != len(self.pointers):
            raise ValueError(f"dials.directions has {len(self.dials.directions)} entries for "
                             f"{len(self.pointers)} pointers (give one per pointer, or none: all clockwise)")
        return self

    @property
    def positions(self) -> int:
        return len(self.digits) + len(self.pointers)

    def resolve(self, base: Path) -> Profile:
        """Make ``reference`` absolute relative to the folder of the profile file."""
        if self.reference is not None and not self.reference.is_absolute():
            return self.model_copy(update={"reference": (base / self.reference).resolve()})
        return self

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        if "min_confidence" not in self.model_fields_set:  # else it would pin the threshold over ocr.reader
            data.pop("min_confidence")
        if self.reader is not None:
            given = self.reader.model_fields_set  # only what was chosen, so the settings fill in the rest
            data["reader"] = self.reader.model_dump(mode="json", exclude_none=True, include=given)
        data["digits"] = [list(b) for b in self.digits]
        data["pointers"] = [list(b) for b in self.pointers]
        if not self.pointers:
            data.pop("dials", None)
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def load_profile(path: Path | str) -> Profile:
    """Load a profile YAML; ConfigError (exit 2) names the problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"cannot read profile {p}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"profile {p} must be a mapping")
    try:
        return Profile.model_validate(data).resolve(p.parent)
    except ValidationError as exc:
        raise ConfigError("profile " + describe(exc, where=str(p), node=node)) from exc
