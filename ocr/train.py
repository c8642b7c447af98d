"""Train the digit models and export them to ONNX (the only module that imports torch: ``pip install .[train]``).

    smartmeter ocr train --data ../shared/data/digits --threads 1      # both shipped models, into ocr/models/
    python -m smartmeter.ocr.train ...                                 # the same command

The run's choices are one :class:`~smartmeter.ocr.train_cli.TrainOptions` (the command's options are made from
it, ``smartmeter ocr train --help`` lists them); ``run(options)`` trains, exports and writes the metadata.

The defaults are the shipped recipe: augmentation recipe 1, synthetic rolling drums (``--roll 0.3``) and digits
rendered from drum fonts (``--fonts 0.5``, ``smartmeter.ocr.digit_fonts``; the font packages come from ``make train``).

Two models from one seeded recipe: ``digits-holdout.onnx`` is trained without the held-out meters
(``ocr.digit_data.HELD_OUT_METERS``) and reports per-meter accuracy on them, the honest estimate for a meter the
model has never seen; ``digits.onnx`` (the production default) is then trained on every meter and records the
holdout model's numbers as its unseen-meter estimate. ``--meters holdout|all`` trains just one. The model reads a
32x20 normalised grey crop (``ocr.digit_preprocess``) and outputs 100 logits, one per tenth of a drum step, trained
against circular Gaussian soft labels. Metadata (version, meters, seed, epochs, augmentation, accuracy) go to the
``.json`` next to the ``.onnx``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smartmeter.errors import ConfigError
from smartmeter.ocr.digit_data import HELD_OUT_METERS, DigitSet, augment_batch, circular_hits, load_digits, plain_batch
from smartmeter.ocr.digit_fonts import DigitFont, find_fonts, render_pool
from smartmeter.ocr.digit_negatives import draw as draw_negatives
from smartmeter.ocr.digit_negatives import share_count
from smartmeter.ocr.digit_preprocess import CLASSES, HEIGHT, WIDTH, circular_error, decode, soft_targets
from smartmeter.ocr.digit_rolls import build_roll_pools, synth_rolls
from smartmeter.ocr.train_cli import TrainOptions, train_cmd

log = logging.getLogger(__name__)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def build_model(widths: tuple[int, int, int] = (16, 32, 64), dropout: float = 0.2,
                reject_class: bool = False) -> nn.Sequential:
    """Three conv-BN-ReLU stages with 2x2 max-pooling (32x20 → 4x2), then one linear layer to 100 classes (and a
    101st, "not a digit", with ``reject_class``)."""
    c1, c2, c3 = widths
    return nn.Sequential(
        *_block(1, c1), nn.MaxPool2d(2),
        *_block(c1, c2), nn.MaxPool2d(2),
        *_block(c2, c3), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(c3 * (HEIGHT // 8) * (WIDTH // 8), CLASSES + int(reject_class)),
    )


def predict(model: nn.Module, planes: np.ndarray, batch: int = 1024) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(planes), batch):
            outs.append(model(torch.from_numpy(planes[i:i + batch, None])).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, CLASSES), np.float32)


def targets_with_reject(labels: np.ndarray, sigma: float, negatives: int) -> np.ndarray:
    """Soft position targets for the digit crops, then ``negatives`` rows all on the reject class (the last)."""
    n = len(labels) - negatives
    t = np.zeros((len(labels), CLASSES + 1), np.float32)
    t[:n, :CLASSES] = soft_targets(labels[:n], sigma)
    t[n:, CLASSES] = 1.0
    return t


def evaluate(model: nn.Module, data: DigitSet) -> dict[str, dict[str, float]]:
    """Per-meter and overall shares within 0.5 and 0.2 of the label."""
    value, _ = decode(predict(model, plain_batch(data.crops))[:, :CLASSES])
    err = circular_error(value, data.labels)
    report: dict[str, dict[str, float]] = {}
    for m in sorted(set(data.meters.tolist())):
        sel = data.meters == m
        a5, a2 = circular_hits(err[sel])
        report[m] = {"n": int(sel.sum()), "within_0.5": round(a5, 4), "within_0.2": round(a2, 4)}
    a5, a2 = circular_hits(err)
    report["ALL"] = {"n": len(err), "within_0.5": round(a5, 4), "within_0.2": round(a2, 4)}
    return report


def train(train_set: DigitSet, val_set: DigitSet | None, o: TrainOptions) -> nn.Module:
    """A model trained on ``train_set`` with the recipe ``o`` (``val_set`` is reported on every 5 epochs)."""
    epochs, batch, roll, ema = o.epochs, o.batch, o.roll, o.ema
    torch.manual_seed(o.seed)
    rng = np.random.default_rng(o.seed)
    if o.reject > 0 and o.teacher:
        raise ConfigError("--reject and --teacher do not combine (a teacher has no reject class)")
    model = build_model(o.widths, reject_class=o.reject > 0)
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=1e-4)
    targets_all = soft_targets(train_set.labels, o.sigma)
    pools = build_roll_pools(train_set, o.roll_static) if roll > 0 else {}
    roll_rng = np.random.default_rng(o.seed + 1)  # its own stream: roll=0 replays the recipe draw for draw
    faces = font_faces(o.font_dir, o.lcd_fonts, o.segment_drums) if o.fonts > 0 else []
    font_crops, font_labels = render_pool(faces, o.font_pool, o.seed + 2) if faces else ([], None)
    n_fonts = int(round(o.fonts * len(train_set))) if font_crops else 0
    n_neg = share_count(o.reject, len(train_set) + n_fonts)  # "not a digit" crops (ocr.digit_negatives)
    neg_rng = np.random.default_rng(o.seed + 4)  # its own stream: reject=0 replays the recipe draw for draw
    text_fonts = [f.path for f in (faces or find_fonts(o.font_dir)) if not f.segments] if n_neg else []
    steps = epochs * ((len(train_set) + n_fonts + n_neg + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=o.lr, total_steps=steps, pct_start=0.15)
    averaged = copy.deepcopy(model) if ema > 0 else None
    teach = Teacher(list(o.teacher), o.distill_temp) if o.teacher else None
    draw = meter_weights(train_set.meters, o.balance) if o.balance > 0 else None
    draw_rng = np.random.default_rng(o.seed + 3)
    for epoch in range(epochs):
        t0 = time.monotonic()
        crops, labels = train_set.crops, train_set.labels
        if pools:
            crops, labels = synth_rolls(train_set, pools, roll_rng, roll)
        if draw is not None:  # small meters drawn more often, large collections less (same epoch size)
            pick = draw_rng.choice(len(labels), size=len(labels), p=draw)
            crops, labels = [crops[j] for j in pick], labels[pick]
        if n_fonts:
            assert font_labels is not None
            pick = roll_rng.choice(len(font_crops), size=n_fonts, replace=False)
            crops = [*crops, *(font_crops[j] for j in pick)]
            labels = np.concatenate([labels, font_labels[pick]])
        if n_neg:
            crops = [*crops, *draw_negatives(train_set.crops, n_neg, neg_rng, text_fonts)]
            labels = np.concatenate([labels, np.zeros(n_neg)])
            targets = targets_with_reject(labels, o.sigma, n_neg)
        else:
            targets = soft_targets(labels, o.sigma) if pools or n_fonts else targets_all
        planes, _ = augment_batch(crops, labels, rng, glare=o.glare, frame=o.frame,
                                  hshift=o.hshift, vscale=o.vscale, recipe=o.recipe, lines=o.lines)
        if teach is not None:  # the teacher's view of the same augmented crops, mixed into the targets
            taught = teach.probabilities(planes)
            targets = ((1.0 - o.distill) * targets + o.distill * taught).astype(np.float32)
        order = rng.permutation(len(labels))
        model.train()
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            x = torch.from_numpy(planes[idx, None])
            t = torch.from_numpy(targets[idx])
            loss = -(t * torch.log_softmax(model(x), dim=1)).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if averaged is not None:
                _ema_update(averaged, model, ema)
            total += loss.item() * len(idx)
        msg = f"epoch {epoch + 1}/{epochs} loss {total / len(order):.4f} ({time.monotonic() - t0:.0f}s)"
        if val_set is not None and len(val_set) and (epoch + 1 == epochs or (epoch + 1) % 5 == 0):
            rep = evaluate(averaged if averaged is not None else model, val_set)
            msg += " | " + " ".join(f"{m[:14]} {r['within_0.5']:.3f}/{r['within_0.2']:.3f}" for m, r in rep.items())
        log.info("%s", msg)
    if averaged is not None:  # the running average of the weights: steadier than the last step's
        model = averaged
    model.eval()
    return model


def meter_weights(meters: np.ndarray, balance: float) -> np.ndarray:
    """Per-crop drawing probabilities giving a meter with n crops a share proportional to n ** (1 - balance):
    0 keeps the data set's proportions, 1 draws every meter equally often."""
    _, index, counts = np.unique(meters, return_inverse=True, return_counts=True)
    w = counts[index].astype(np.float64) ** -balance
    return w / w.sum()


class Teacher:
    """Larger or several trained models (ONNX) whose softened, averaged class probabilities the small model learns
    from too (knowledge distillation): they say which digits a crop resembles, which a label alone does not."""

    def __init__(self, paths: list[Path], temperature: float) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in paths]
        self.temperature = temperature

    def probabilities(self, planes: np.ndarray, batch: int = 2048) -> np.ndarray:
        total = np.zeros((len(planes), CLASSES))
        for session in self.sessions:
            out = [session.run(None, {"x": planes[i:i + batch, None]})[0] for i in range(0, len(planes), batch)]
            logits = np.concatenate(out).astype(np.float64) / self.temperature
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            total += p / p.sum(axis=1, keepdims=True)
        return total / len(self.sessions)


def _ema_update(averaged: nn.Module, model: nn.Module, decay: float) -> None:
    """averaged = decay * averaged + (1 - decay) * model, for weights and batch-norm statistics alike."""
    with torch.no_grad():
        for a, m in zip(averaged.state_dict().values(), model.state_dict().values(), strict=True):
            if a.dtype.is_floating_point:
                a.mul_(decay).add_(m.detach(), alpha=1.0 - decay)
            else:
                a.copy_(m)


def font_faces(font_dir: Path, lcd_fonts: bool, segment_drums: bool) -> list[DigitFont]:
    """The fonts to render: drum faces, plus seven-segment faces as LCD digits and/or as rolling drums."""
    faces = []
    for f in find_fonts(font_dir):
        if not f.segments or lcd_fonts:
            faces.append(f)
        if f.segments and segment_drums:
            faces.append(dataclasses.replace(f, segments=False))
    return faces


def export_onnx(model: nn.Module, out: Path) -> None:
    """ONNX, opset 17, dynamic batch: input ``x`` (N x 1 x 32 x 20), output ``logits`` (N x 100, or N x 101 with
    the reject class last)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.onnx.export(model, (torch.zeros(1, 1, HEIGHT, WIDTH),), str(out), input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
                      opset_version=17, dynamo=False)


HOLDOUT_NAME = "digits-holdout.onnx"  # trained without HELD_OUT_METERS: honest accuracy on them
PRODUCTION_NAME = "digits.onnx"  # trained on every meter: the reader's default


def unseen_estimate(holdout_model: Path) -> dict[str, object] | None:
    """The held-out accuracy of the holdout model, recorded in the all-meters model as its unseen-meter estimate."""
    meta_path = holdout_model.with_suffix(".json")
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    return {"model": holdout_model.name, "version": meta.get("version"),
            "held_out_meters": meta.get("held_out_meters"), "accuracy_held_out": meta.get("accuracy_held_out")}


def run(o: TrainOptions) -> None:
    """Train the model(s) ``o.meters`` names, each written to ``o.out_dir`` with its metadata."""
    torch.set_num_threads(o.threads)
    data = load_digits(o.data, limit_per_meter=o.limit_per_meter, seed=o.seed)
    for variant in (["holdout", "all"] if o.meters == "both" else [o.meters]):
        out = o.out_dir / (HOLDOUT_NAME if variant == "holdout" else PRODUCTION_NAME)
        if o.tag:
            out = out.with_name(f"{out.stem}-{o.tag}{out.suffix}")
        train_variant(o, data, variant, out)


def main(argv: list[str] | None = None) -> None:
    """``python -m smartmeter.ocr.train``: the ``smartmeter ocr train`` command."""
    train_cmd.main(args=argv, prog_name="python -m smartmeter.ocr.train")


def train_variant(o: TrainOptions, data: DigitSet, variant: str, out: Path) -> None:
    """Train one model (``holdout`` or ``all`` meters) with the recipe ``o``; write ``out`` and its json."""
    started = time.monotonic()
    held = np.isin(data.meters, HELD_OUT_METERS)
    if variant == "all":
        train_set, val_set = data, None
        log.info("training on all %d crops of %d meters", len(train_set), len(set(train_set.meters.tolist())))
    else:
        train_set, val_set = data.select(~held), data.select(held)
        log.info("training on %d crops of %d meters, holding out %d crops of %s", len(train_set),
                 len(set(train_set.meters.tolist())), len(val_set), ", ".join(HELD_OUT_METERS))
    model = train(train_set, val_set, o)
    export_onnx(model, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    meta: dict[str, object] = {
        "version": f"digits-{'holdout-' if val_set is not None else ''}{datetime.now(UTC):%Y%m%d}-{digest[:8]}",
        "input": {"name": "x", "height": HEIGHT, "width": WIDTH, "channels": 1,
                  "preprocess": "smartmeter.ocr.digit_preprocess.preprocess_batch"},
        "output": {"name": "logits", "classes": CLASSES, "reject_class": o.reject > 0,
                   "decode": "smartmeter.ocr.digit_preprocess.decode"},
        "sha256": digest,
        "trained_on": "all meters" if val_set is None else "all meters except held_out_meters",
        "held_out_meters": [] if val_set is None else list(HELD_OUT_METERS),
        "trained_on_crops": len(train_set),
        "nan_labels": "excluded from training and evaluation",
        "seed": o.seed,
        "epochs": o.epochs,
        "widths": list(o.widths),
        "ema": o.ema,
        "augment": {"recipe": o.recipe, "roll": o.roll, "fonts": o.fonts, "reject": o.reject,
                    "lcd_fonts": o.lcd_fonts, "segment_drums": o.segment_drums,
                    "teacher": [p.name for p in o.teacher],
                    "distill": o.distill if o.teacher else 0.0, "distill_temp": o.distill_temp,
                    "lines": o.lines, "balance": o.balance, "roll_static": o.roll_static,
                    "glare": o.glare,
                    "frame": o.frame, "hshift": o.hshift, "vscale": o.vscale},
        "threads": o.threads,
        "limit_per_meter": o.limit_per_meter,
        "torch": torch.__version__,
        "train_seconds": round(time.monotonic() - started),
    }
    if val_set is not None:
        meta["accuracy_held_out"] = evaluate(model, val_set)
        meta["accuracy_train_meters"] = evaluate(model, train_set)
    else:
        meta["accuracy_train_meters"] = evaluate(model, train_set)
        meta["accuracy_on_unseen_meters"] = (
            "not measurable for this model (it saw every meter); estimate = the holdout model's held-out accuracy")
        meta["unseen_meter_estimate"] = unseen_estimate(out.parent / HOLDOUT_NAME)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %s (%d bytes) and %s", out, out.stat().st_size, out.with_suffix(".json"))
    report = meta.get("accuracy_held_out") or meta["accuracy_train_meters"]
    assert isinstance(report, dict)
    for m, r in report.items():
        log.info("%-22s n=%5d  <=0.5 %.4f  <=0.2 %.4f", m, r["n"], r["within_0.5"], r["within_0.2"])


if __name__ == "__main__":
    main()
