"""Phase correlation against a fixed reference whose spectrum is computed once.

``cv2.phaseCorrelate(ref, img)`` transforms both images on every call; aligning a stream of photos to one
reference (and to its mirror images, to refuse a mirrored photo) repeats the reference half of that work for
nothing. :class:`PhaseReference` keeps the reference spectrum; :func:`spectrum` of a photo can be shared by several
references of the same size. Same method and conventions as OpenCV's (``imgproc/src/phasecorr.cpp``): normalised
cross-power spectrum, inverse transform, peak, 5x5 weighted centroid; the response is the centroid's mass (1.0 for
identical images), and the shift is how far ``image`` is moved against the reference.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)

EPS = 1e-12


def spectrum(image: np.ndarray) -> np.ndarray:
    """2-D spectrum (``h x w x 2``, OpenCV's complex layout) of a grey image, as float32."""
    return cv2.dft(np.asarray(image, dtype=np.float32), flags=cv2.DFT_COMPLEX_OUTPUT)


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
        mag = cv2.magnitude(cross[..., 0], cross[..., 1]) + EPS
        cross = cv2.divide(cross, cv2.merge((mag, mag)))
        surface = cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        # peak and 5x5 centroid in the centred (fft-shifted) frame, without shifting the whole surface
        h, w = self.shape
        _, _, _, (px, py) = cv2.minMaxLoc(surface)
        sy, sx = (py + h // 2) % h, (px + w // 2) % w
        ys = np.arange(max(0, sy - 2), min(h, sy + 3))
        xs = np.arange(max(0, sx - 2), min(w, sx + 3))
        box = surface[np.ix_((ys - h // 2) % h, (xs - w // 2) % w)]
        mass = float(box.sum())
        if not np.isfinite(mass) or mass == 0.0:
            return (0.0, 0.0), 0.0
        ty = float(box.sum(axis=1) @ ys) / mass
        tx = float(box.sum(axis=0) @ xs) / mass
        return (self.centre[0] - tx, self.centre[1] - ty), mass
