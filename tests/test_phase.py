"""Phase correlation against a cached reference spectrum: same answers as OpenCV's, shifts recovered."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smartmeter.ocr.phase import PhaseReference, spectrum


def texture(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (7, 7), 2)


def moved(image: np.ndarray, dx: float, dy: float, seed: int = 1) -> np.ndarray:
    h, w = image.shape
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return out + np.random.default_rng(seed).normal(0, 0.02, out.shape).astype(np.float32)


@pytest.mark.parametrize(("dx", "dy"), [(0.0, 0.0), (3.3, -2.1), (-10.5, 4.25), (0.2, 0.7)])
def test_matches_opencv_phase_correlate(dx: float, dy: float) -> None:
    ref = texture()
    photo = moved(ref, dx, dy)
    (ex, ey), expected = cv2.phaseCorrelate(ref, photo)
    (gx, gy), response = PhaseReference(ref).correlate(photo)
    assert (gx, gy) == pytest.approx((ex, ey), abs=1e-3)
    assert response == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(("h", "w"), [(90, 135), (45, 75), (91, 134), (60, 81), (7, 9), (1, 16)])
def test_packed_spectra_of_every_size_parity_give_the_full_correlation(h: int, w: int) -> None:
    """The half (CCS) spectrum packs even and odd heights and widths differently: all four give the correlation
    surface of the full complex spectra (numpy), phase-only."""
    rng = np.random.default_rng(5)
    a, b = rng.random((h, w)).astype(np.float32), rng.random((h, w)).astype(np.float32)
    surface = cv2.idft(cv2.mulSpectrums(spectrum(a), spectrum(b), 0, conjB=True),
                       flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    fa, fb = np.fft.fft2(a.astype(np.float64)), np.fft.fft2(b.astype(np.float64))
    expected = np.fft.ifft2(fa / np.abs(fa) * np.conj(fb / np.abs(fb))).real
    assert np.abs(surface - expected).max() < 1e-5


def test_recovers_a_shift_and_shares_the_photo_spectrum() -> None:
    ref = texture()
    photo = moved(ref, -7.0, 5.0)
    spec = spectrum(photo)
    (dx, dy), response = PhaseReference(ref).correlate(spec=spec)
    assert (dx, dy) == pytest.approx((-7.0, 5.0), abs=0.6)
    assert response > 0.5
    # the same spectrum against the mirrored reference: no clear peak
    assert PhaseReference(cv2.flip(ref, 1)).correlate(spec=spec)[1] < 0.3


def test_unrelated_images_give_a_weak_response() -> None:
    assert PhaseReference(texture(seed=3)).correlate(texture(seed=4))[1] < 0.2


def test_a_flat_image_gives_no_answer_rather_than_a_shift() -> None:
    (dx, dy), response = PhaseReference(np.zeros((60, 80), np.float32)).correlate(np.zeros((60, 80), np.float32))
    assert response < 0.2


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        PhaseReference(texture()).correlate(np.zeros((10, 10), np.float32))
