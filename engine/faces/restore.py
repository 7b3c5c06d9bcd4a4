"""Restoring the faces of a picture, as A1111 does through facexlib's FaceRestoreHelper (face size 512, upscale
factor 1): find the faces (RetinaFace, `retinaface.py`), align each to the FFHQ 5-point template at 512
(`cv2.estimateAffinePartial2D` with LMEDS, warped with a gray border), restore it, warp it back with the
inverse transform and paste it with a soft mask: the warped square eroded by 2 pixels, then eroded and
Gaussian-blurred by a width that grows with the face (facexlib's path without the parsing model; Salon does
not use `parsing_parsenet.pth`, so the mask is the face's square, not its parsed outline). Pixels outside the
warped square are left exactly as they were. Faces whose eyes lie under 5 pixels apart are skipped (A1111's
eye_dist_threshold). Visibility blends the result with the input (A1111's Extras: `Image.blend`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from engine.faces.files import FaceRestorer
from engine.faces.retinaface import DETECT_SHORT_SIDE, Face, RetinaFace, detect_faces

log = logging.getLogger(__name__)

FACE_SIZE = 512
# facexlib's face_template: the 5 landmarks of an FFHQ face at 512 (eyes, nose tip, mouth corners).
FACE_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)
BORDER_RGB = (132, 133, 135)  # facexlib's borderValue (135, 133, 132) is BGR
EYE_DISTANCE_MIN = 5.0


def align_face(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face warped onto the template (512×512 RGB uint8) and the 2×3 transform used."""
    matrix = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), FACE_TEMPLATE, method=cv2.LMEDS)[0]
    crop = cv2.warpAffine(
        rgb, matrix, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_RGB
    )
    return crop, matrix


def restore_crop(restorer: FaceRestorer, crop: np.ndarray, weight: float) -> np.ndarray:
    """An aligned face (RGB uint8) through the restorer: normalised to [-1, 1] and back, rounded."""
    param = next(restorer.module.parameters())
    x = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).float().div(255.0).sub(0.5).div(0.5)
    with torch.inference_mode():
        out = restorer.restore(x.to(device=param.device, dtype=param.dtype), weight)
    out = out.float().clamp(-1, 1).add(1).div(2).mul(255).round()
    return out[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy()


def paste_face(rgb: np.ndarray, restored: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`restored` warped back into `rgb` (float32 H×W×3) through the inverse of `matrix`, with a soft mask."""
    height, width = rgb.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    back = cv2.warpAffine(restored, inverse, (width, height)).astype(np.float32)
    square = cv2.warpAffine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), inverse, (width, height))
    square = cv2.erode(square, np.ones((2, 2), np.uint8))
    edge = int(float(square.sum()) ** 0.5) // 20
    centre = cv2.erode(square, np.ones((max(edge * 2, 1), max(edge * 2, 1)), np.uint8))
    soft = cv2.GaussianBlur(centre, (edge * 2 + 1, edge * 2 + 1), 0)[:, :, None]
    return soft * (square[:, :, None] * back) + (1 - soft) * rgb


def restore_found(
    image: Image.Image, restorer: FaceRestorer, faces: Sequence[Face], weight: float
) -> Image.Image:
    """`image` with each of `faces` restored and pasted back (unchanged when there are none)."""
    rgb = np.asarray(image.convert("RGB"))
    out = rgb.astype(np.float32)
    for face in faces:
        crop, matrix = align_face(rgb, face.landmarks)
        out = paste_face(out, restore_crop(restorer, crop, weight), matrix)
    return Image.fromarray(out.astype(np.uint8), "RGB")  # truncated, as facexlib's astype


def usable_faces(faces: Sequence[Face]) -> list[Face]:
    """The faces A1111 restores: eyes at least 5 pixels apart."""
    return [f for f in faces if float(np.linalg.norm(f.landmarks[0] - f.landmarks[1])) >= EYE_DISTANCE_MIN]


def restore_faces(
    image: Image.Image,
    restorer: FaceRestorer,
    detector: RetinaFace | Callable[[np.ndarray], list[Face]],
    weight: float = 0.5,
    short_side: int | None = DETECT_SHORT_SIDE,
) -> Image.Image:
    """Find and restore every face of `image`; with none found, the image itself (and a logged note).
    `short_side`: the shorter side the RetinaFace `detector` sees the picture at (A1111's 640)."""
    rgb = np.asarray(image.convert("RGB"))
    if isinstance(detector, RetinaFace):
        found = detect_faces(detector, rgb, short_side=short_side)
    else:
        found = detector(rgb)
    faces = usable_faces(found)
    if not faces:
        log.info("face restoration (%s): no face found in a %dx%d image", restorer.name, *image.size)
        return image
    return restore_found(image, restorer, faces, weight)


def with_visibility(original: Image.Image, restored: Image.Image, visibility: float) -> Image.Image:
    """A1111's Extras blend: the restored picture at `visibility` over the input (1: the restored one)."""
    if visibility >= 1:
        return restored
    return Image.blend(original.convert("RGB"), restored.convert("RGB"), visibility)
