"""``smartmeter ocr train`` (also ``python -m smartmeter.ocr.train``): the training recipe as one options object.

:class:`TrainOptions` holds every choice of a training run, with the shipped recipe as its defaults; the command's
options are made from its fields (name, default, help, range), so the command and the function ``ocr.train.run``
cannot drift apart (each model's .json records the options that shape it). This module does not import torch
(the ``train`` extra): ``--help`` works everywhere, and a run without torch ends with a clear error.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

from smartmeter.errors import ConfigError
from smartmeter.ocr.digit_fonts import FONT_DIR

SHARE = click.FloatRange(0.0, 1.0)


class Widths(click.ParamType):
    """``16,32,64``: the channels of the three conv stages."""

    name = "C1,C2,C3"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int, int]:
        if isinstance(value, tuple):
            return value  # type: ignore[return-value]
        try:
            a, b, c = (int(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not three channel counts like 16,32,64", param, ctx)
        if min(a, b, c) < 1:
            self.fail(f"{value!r}: channel counts must be >= 1", param, ctx)
        return a, b, c


def opt(help_text: str, type_: Any = None, **click_kw: Any) -> dict[str, Any]:
    """A field's command-line option: its help, its click type and any other ``click.option`` argument."""
    return {"help": help_text, "type": type_, **click_kw}


@dataclass(frozen=True)
class TrainOptions:
    """One training run; the defaults are the recipe of the shipped models (docs/model.md)."""

    data: Path = field(default=Path("../shared/data/digits"), metadata=opt(
        "Labelled digit crops (ocr.digit_data layout).", click.Path(file_okay=False, path_type=Path)))
    meters: Literal["holdout", "all", "both"] = field(default="both", metadata=opt(
        "holdout: train without HELD_OUT_METERS and report on them (digits-holdout.onnx); all: train on every "
        "meter (the production model, digits.onnx); both: holdout, then all.",
        click.Choice(["holdout", "all", "both"])))
    out_dir: Path = field(default=Path("ocr/models"), metadata=opt(
        "Where the .onnx and .json files go.", click.Path(file_okay=False, path_type=Path)))
    epochs: int = field(default=50, metadata=opt("Passes over the training crops.", click.IntRange(1)))
    seed: int = field(default=20240601, metadata=opt("Seed of every random draw (the run is reproducible).", int))
    limit_per_meter: int | None = field(default=None, metadata=opt(
        "Subsample each meter to this many crops (quick experiments, smoke runs).", click.IntRange(1)))
    threads: int = field(default=2, metadata=opt("Torch threads.", click.IntRange(1)))
    batch: int = field(default=128, metadata=opt("Crops per optimiser step.", click.IntRange(1)))
    lr: float = field(default=3e-3, metadata=opt("Peak learning rate (one-cycle schedule).",
                                                 click.FloatRange(0.0, min_open=True)))
    sigma: float = field(default=1.0, metadata=opt("Width of the circular Gaussian soft labels, in tenths of a step.",
                                                   click.FloatRange(0.0, min_open=True)))
    glare: float = field(default=0.2, metadata=opt("Share of training crops given a bright reflection.", SHARE))
    frame: float = field(default=0.35, metadata=opt(
        "Share given a frame edge or a neighbour-drum slice (recipe 2).", SHARE))
    hshift: float = field(default=0.15, metadata=opt(
        "Pad of each side up to this share of the width, cuts at most MAX_SIDE_CUT (recipe 2).", SHARE))
    vscale: float = field(default=0.0, metadata=opt("Centred vertical cut/pad, share of the height (recipe 2).", SHARE))
    recipe: int = field(default=1, metadata=opt(
        "Augmentation: 1 = the shipped models' recipe (ignores --frame/--hshift/--vscale); 2 = side cut/pad, frame "
        "edges, tint, tilted glare (docs/model.md: not better yet).", click.IntRange(1, 2)))
    roll: float = field(default=0.3, metadata=opt(
        "Share of crops of rolling meters replaced each epoch by a synthetic half-rolled drum made from two "
        "whole-digit crops of the same meter (ocr.digit_rolls).", SHARE))
    reject: float = field(default=0.0, metadata=opt(
        "Share of each epoch that is \"not a digit\" crops (ocr.digit_negatives: a box between two drums, a frame "
        "edge, a blank drum, glare, print), trained onto a 101st output, the reject class (0 = no reject class).",
        click.FloatRange(0.0, 0.9)))
    fonts: float = field(default=0.5, metadata=opt(
        "Rendered font digits added each epoch, as a share of the real crops (ocr.digit_fonts).",
        click.FloatRange(0.0)))
    roll_static: float = field(default=0.0, metadata=opt(
        "Also roll the digits of meters that never roll (LCDs) at this drum pitch, a share of the crop height "
        "(0 = off).", SHARE))
    font_dir: Path = field(default=FONT_DIR, metadata=opt(
        "Fonts to render digits from (make train installs them).", click.Path(file_okay=False, path_type=Path)))
    font_pool: int = field(default=20000, metadata=opt("Font digits rendered once, drawn from each epoch.",
                                                       click.IntRange(1)))
    lcd_fonts: bool = field(default=False, metadata=opt(
        "Render seven-segment digits too (off: they made the model read LCD ones as sevens).", is_flag=True))
    segment_drums: bool = field(default=False, metadata=opt(
        "Render seven-segment faces as rolling drum digits too.", is_flag=True))
    teacher: tuple[Path, ...] = field(default=(), metadata=opt(
        "A trained model (.onnx) to distil from; repeat for an ensemble.",
        click.Path(dir_okay=False, exists=True, path_type=Path), multiple=True))
    distill: float = field(default=0.5, metadata=opt("Weight of the teacher's probabilities in the targets.", SHARE))
    distill_temp: float = field(default=2.0, metadata=opt("Temperature softening the teacher's logits.",
                                                          click.FloatRange(0.0, min_open=True)))
    balance: float = field(default=0.0, metadata=opt(
        "Draw the crops of a meter with n crops in proportion to n ** (1 - balance) each epoch (0 = as they are, "
        "1 = every meter equally).", SHARE))
    ema: float = field(default=0.0, metadata=opt(
        "Keep an exponential moving average of the weights with this decay per step (0 = off) and export it.",
        click.FloatRange(0.0, 1.0, max_open=True)))
    lines: float = field(default=0.0, metadata=opt("Share of crops crossed by a thin sharp line.", SHARE))
    widths: tuple[int, int, int] = field(default=(16, 32, 64), metadata=opt(
        "Channels of the three conv stages.", Widths(), show_default="16,32,64"))
    tag: str = field(default="", metadata=opt("Suffix for the output file names (experiments).", str))


def options_from_fields(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a click command with one option per field of the dataclass ``cls``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(dataclasses.fields(cls)):
            kw = {k: v for k, v in f.metadata.items() if v is not None}
            kw.setdefault("show_default", f.default not in (None, "", ()))
            fn = click.option("--" + f.name.replace("_", "-"), f.name, default=f.default, **kw)(fn)
        return fn

    return decorate


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@options_from_fields(TrainOptions)
def train_cmd(**values: Any) -> None:
    """Train the digit models and export them to ONNX (needs the train extra: torch).

    The defaults train both shipped models, into ocr/models/ (docs/model.md). A smoke run that checks the set-up
    in seconds: --meters holdout --epochs 1 --limit-per-meter 20 --fonts 0 --roll 0 --out-dir /tmp/m.
    """
    options = TrainOptions(**values)
    try:
        from smartmeter.ocr import train
    except ImportError as exc:
        raise ConfigError(f"training needs torch: {exc}", hint="pip install 'smartmeter[train]' (make train)") from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger(train.__name__).setLevel(logging.INFO)
    train.run(options)
