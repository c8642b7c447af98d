"""Phase correlation against a fixed reference whose spectrum is computed once.

``cv2.phaseCorrelate(ref, img)`` transforms both images on every call; aligning a stream of photos to one
reference (and to its mirror images, to refuse a mirrored photo) repeats the reference half of that work for
nothing. :class:`PhaseReference` keeps the reference spectrum; :func:`spectrum` of a photo can be shared by several
references of the same size. Same method and conventions as OpenCV's (``imgproc/src/phasecorr.cpp``): normalised
cross-power spectrum, inverse transform, peak, 5x5 weighted centroid; the response is the centroid's mass (1.0 for
identical images), and the shift is how far ``image`` is moved against the reference. The cross-power spectrum
normalised, ``A·conj(B) / |A·conj(B)|``, equals ``(A/|A|)·conj(B/|B|)``, so both spectra are kept phase-only
(unit magnitude): each correlation is then one multiplication and one inverse transform. Spectra are kept in
OpenCV's packed half-spectrum layout (CCS), which a real image determines: a third of the full transform's cost.

Alignment uses it through windows: :func:`correct` looks at two reference windows through an estimated
homography and returns the similarity (rotation, zoom, shift) that corrects the estimate.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from smartmeter.errors import AlignmentError
from smartmeter.ocr.warp import is_affine

log = logging.getLogger(__name__)

EPS = 1e-12


def spectrum(image: np.ndarray) -> np.ndarray:
    """Phase-only 2-D spectrum of a grey image (float32, ``h x w``, every entry of magnitude 1 or 0) in OpenCV's
    packed layout for real images (CCS: half the spectrum, which a real image determines; a third of the cost of
    the full complex one, forward and back)."""
    spec = cv2.dft(np.asarray(image, dtype=np.float32))
    h, w = spec.shape
    end = w - 1 if w % 2 == 0 else w  # an even width packs the Nyquist column like column 0, in the last column
    _unit(spec[:, 1:end:2], spec[:, 2:end:2])  # (re, im) pairs, every row
    for col in (0, w - 1) if w % 2 == 0 and w > 1 else (0,):
        c = spec[:, col]  # a real 1-D spectrum packed down the column: DC, (re, im) pairs, [Nyquist]
        pairs_end = h - 1 if h % 2 == 0 else h
        _unit(c[1:pairs_end:2], c[2:pairs_end:2])
        for row in (0, h - 1) if h % 2 == 0 and h > 1 else (0,):
            c[row] /= abs(c[row]) + EPS
    return spec


def _unit(re: np.ndarray, im: np.ndarray) -> None:
    """Divide the complex numbers ``re + i im`` (views into a spectrum) by their magnitude, in place."""
    mag = np.sqrt(re * re + im * im)
    mag += EPS
    re /= mag
    im /= mag


class PhaseReference:
    """One reference image (grey, float) ready for repeated phase correlation."""

    def __init__(self, reference: np.ndarray) -> None:
        self.shape = reference.shape[:2]
        self.spec = spectrum(reference)
        self.centre = (self.shape[1] / 2.0, self.shape[0] / 2.0)

    def correlate(self, image: np.ndarray | None = None, *, spec: np.ndarray | None = None
                  ) -> tuple[tuple[float, float], float]:
        """``((dx, dy), response)`` of ``image`` (or of its precomputed ``spec``) against the reference, as
        ``cv2.phaseCorrelate(reference, image)`` returns it."""
        if spec is None:
            if image is None or image.shape[:2] != self.shape:
                raise ValueError(f"image shape {None if image is None else image.shape} != reference {self.shape}")
            spec = spectrum(image)
        cross = cv2.mulSpectrums(self.spec, spec, 0, conjB=True)
        surface = cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)  # CCS in, real out
        # peak and 5x5 centroid in the centred (fft-shifted) frame, without shifting the whole surface
        h, w = self.shape
        _, _, _, (px, py) = cv2.minMaxLoc(surface)
        sy, sx = (py + h // 2) % h, (px + w // 2) % w
        ys = np.arange(max(0, sy - 2), min(h, sy + 3))
        xs = np.arange(max(0, sx - 2), min(w, sx + 3))
        box = surface[((ys - h // 2) % h)[:, None], (xs - w // 2) % w]  # (np.ix_ costs more than the rest)
        mass = float(box.sum())
        if not np.isfinite(mass) or mass == 0.0:
            return (0.0, 0.0), 0.0
        ty = float(box.sum(axis=1) @ ys) / mass
        tx = float(box.sum(axis=0) @ xs) / mass
        return (self.centre[0] - tx, self.centre[1] - ty), mass


Window = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 excluded)
PhaseWindow = tuple[Window, PhaseReference]


def phase_windows(ref: np.ndarray, windows: list[Window]) -> list[PhaseWindow]:
    """Windows ``(x0, y0, x1, y1)`` of ``ref`` with their reference spectra."""
    return [((x0, y0, x1, y1), PhaseReference(ref[y0:y1, x0:x1])) for x0, y0, x1, y1 in windows]


def correct(image: np.ndarray, to_ref: np.ndarray, windows: list[PhaseWindow],
            min_response: float) -> tuple[np.ndarray, list[float], float]:
    """Look at two reference windows through the current estimate ``to_ref`` (image -> ref pixels) and return
    the similarity that corrects it (ref -> ref), the windows' phase correlation responses and the largest
    remaining shift. AlignmentError when a window does not match clearly."""
    moved, still, responses, worst = [], [], [], 0.0
    affine = is_affine(to_ref)
    for (x0, y0, x1, y1), ref in windows:
        m = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ to_ref
        size = (x1 - x0, y1 - y0)
        if affine:
            patch = cv2.warpAffine(image, m[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        else:
            patch = cv2.warpPerspective(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        (ex, ey), r = ref.correlate(patch)
        if not np.isfinite(r) or r < min_response:
            raise AlignmentError(f"the digit region does not match at the translation (response {r:.2f})")
        log.debug("phase window %s: residual %.2f %.2f, response %.2f", (x0, y0, x1, y1), ex, ey, r)
        cx, cy = (x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0
        moved.append(complex(cx + ex, cy + ey))  # where the window's content is seen through the estimate
        still.append(complex(cx, cy))
        responses.append(float(r))
        worst = max(worst, abs(ex), abs(ey))
    # the similarity taking the seen positions to the reference ones: z_ref = a * z_seen + b
    a = (still[0] - still[1]) / (moved[0] - moved[1])
    b = still[0] - a * moved[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag], [0.0, 0.0, 1.0]]), responses, worst


def dft_window(cx: float, cy: float, width: float, height: float, w: int, h: int) -> Window:
    """A window centred on ``cx, cy`` at least ``width x height`` large, grown to sizes the DFT handles fast
    (products of 2, 3 and 5) and kept inside a ``w x h`` image."""
    ww = min(w, cv2.getOptimalDFTSize(max(8, round(width))))
    wh = min(h, cv2.getOptimalDFTSize(max(8, round(height))))
    x0 = min(max(0, round(cx - ww / 2.0)), w - ww)
    y0 = min(max(0, round(cy - wh / 2.0)), h - wh)
    return (x0, y0, x0 + ww, y0 + wh)


