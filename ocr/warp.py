"""Cut the profile's boxes out of a photo through an alignment homography, and the matrix helpers alignment shares.

Homographies map photo pixels to reference pixels. Boxes that sit close together (a row of drums) are warped in
one call and sliced; affine maps take the cheaper ``warpAffine``.
"""

from __future__ import annotations

import cv2
import numpy as np

from smartmeter.errors import AlignmentError
from smartmeter.ocr.profile import Box

MAX_ANISOTROPY = 1.1  # largest ratio of a homography's two scales: a fixed camera that moved a little zooms both
# axes alike; ORB matches on a blurred photo were seen to squeeze one axis by 15 % (1.14), 4-7 px off at the ends


def scale_matrix(sx: float, sy: float) -> np.ndarray:
    """Pixel coordinates of an image -> of the same image resized by ``sx, sy`` (pixel centres stay aligned,
    as ``cv2.resize`` does)."""
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def is_affine(m: np.ndarray) -> bool:
    return abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12 and abs(m[2, 2] - 1.0) < 1e-12


def check_not_degenerate(h: np.ndarray) -> None:
    """Refuse homographies no fixed camera produces: mirrored, squashed, strongly scaled or perspective."""
    a = h[:2, :2] / h[2, 2]
    det = float(np.linalg.det(a))
    if not np.isfinite(det) or det <= 0:
        raise AlignmentError("degenerate homography (mirrored or collapsed)")
    sv = np.linalg.svd(a, compute_uv=False)
    if sv.min() < 0.7 or sv.max() > 1.4 or sv.max() / sv.min() > MAX_ANISOTROPY:
        raise AlignmentError(f"degenerate homography (scales {sv.min():.2f}..{sv.max():.2f})")
    if np.abs(h[2, :2] / h[2, 2]).max() > 1e-3:
        raise AlignmentError("degenerate homography (strong perspective)")


def crop_boxes(image: np.ndarray, boxes: list[Box], homography: np.ndarray | None = None,
               scale: float = 1.0) -> list[np.ndarray]:
    """Cut reference-frame boxes out of a photo: directly, or through ``homography`` (photo -> reference).

    ``scale`` < 1 cuts the crops that much smaller (a photo decoded at reduced size: each crop is sampled once
    from the photo, never up and down again). Boxes that sit close together (a row of drums) are warped in one
    call and sliced, which is faster.
    """
    h, w = image.shape[:2]
    if not boxes:
        return []
    if homography is None or (scale == 1.0 and float(np.abs(homography - np.eye(3)).max()) <= 1e-9):
        for box in boxes:
            problem = outside_error(box, box_corners(box), w, h, f"the {w}x{h} photo")
            if problem:
                raise AlignmentError(problem)
        return [image[y:y + bh, x:x + bw].copy() for x, y, bw, bh in boxes]  # copies: the photo can be freed
    inverse = np.linalg.inv(homography)
    a = homography[:2, :2] / homography[2, 2]
    to_ref = float(np.sqrt(abs(np.linalg.det(a))))  # photo pixels -> reference pixels, about
    for box in boxes:
        in_photo = cv2.perspectiveTransform(box_corners(box).reshape(-1, 1, 2), inverse).reshape(-1, 2)
        problem = outside_error(box, in_photo, w, h, f"the {round(w / scale)}x{round(h / scale)} photo after "
                                "alignment", to_ref, slack=2.0)  # the photo's own size, also decoded reduced
        if problem:
            raise AlignmentError(problem)
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    if scale == 1.0 and (x1 - x0) * (y1 - y0) <= 2 * sum(b[2] * b[3] for b in boxes):
        region = _warp(image, homography, (x0, y0, x1 - x0, y1 - y0), 1.0)
        return [region[y - y0:y - y0 + bh, x - x0:x - x0 + bw] for x, y, bw, bh in boxes]
    return [_warp(image, homography, box, scale) for box in boxes]


def box_corners(box: Box) -> np.ndarray:
    x, y, bw, bh = box
    return np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]], dtype=np.float64)


def outside_error(box: Box, corners: np.ndarray, w: int, h: int, what: str, to_ref: float = 1.0,
                  slack: float = 0.0) -> str | None:
    """None when a box's corners (photo pixels) lie within the ``w x h`` photo (``slack`` px allowed), else an
    error that names each side the box crosses and by how much, in reference pixels (what the profile says)."""
    over = {"left": -corners[:, 0].min(), "top": -corners[:, 1].min(), "right": corners[:, 0].max() - w,
            "bottom": corners[:, 1].max() - h}
    sides = [f"{max(1, round(amount * to_ref))} px past its {side} edge" for side, amount in over.items()
             if amount > slack]
    if not sides:
        return None
    return (f"box {list(box)} falls outside {what}: " + ", ".join(sides)
            + " (reference pixels: move the box in, or make it smaller)")


def _warp(image: np.ndarray, homography: np.ndarray, box: Box, scale: float) -> np.ndarray:
    x, y, bw, bh = box
    to_box = scale_matrix(scale, scale) @ np.array([[1.0, 0.0, -x], [0.0, 1.0, -y], [0.0, 0.0, 1.0]]) @ homography
    size = (max(1, round(bw * scale)), max(1, round(bh * scale)))
    if is_affine(to_box):  # affine (every method but ORB): cheaper
        return cv2.warpAffine(image, to_box[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpPerspective(image, to_box, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_shrunk(grey: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``grey`` warped by an affine 3x3 ``matrix`` onto ``size``, shrunk by area first when it shrinks much."""
    h, w = grey.shape[:2]
    f = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    if f < 0.7:
        small = (max(1, round(w * f)), max(1, round(h * f)))
        shrink = scale_matrix(small[0] / w, small[1] / h)
        grey, matrix = cv2.resize(grey, small, interpolation=cv2.INTER_AREA), matrix @ np.linalg.inv(shrink)
    return cv2.warpAffine(grey, matrix[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
