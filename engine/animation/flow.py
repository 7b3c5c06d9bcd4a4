"""Optical flow for animations: Deforum's flow methods through OpenCV, and frames moved along a flow.

Deforum (scripts/deforum_helpers/hybrid_video.py) estimates dense flow with OpenCV's DIS (the "medium" preset, or
"fine": finest scale 0, 192 gradient-descent iterations, patch size 8, stride 4) or Farneback (5 levels, window
21, 5 iterations, polynomial neighbourhood 7, sigma 1.2), both on grey frames; RAFT needs torchvision's RAFT
weights, which Salon does not download, so it is refused by name. A frame is moved along a flow as Deforum's
`image_transform_optical_flow`: each output pixel p shows the input at p − factor × flow(p), sampled bilinearly
with a reflected border.

Cadence (`optical_flow_cadence`): a frame between two diffused frames is made from the earlier one moved forward
and the later one moved back to its camera (engine/animation/animate.py); with a flow method, the flow between
those two is measured and each is moved along it to where the in-between frame lies before they are blended, so
what moved between the diffused frames slides instead of fading.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.errors import InvalidRequest
from engine.animation.frame_ops import blend

FLOW_METHODS = ("DIS Medium", "DIS Fine", "Farneback")  # what Salon computes
DEFORUM_FLOW_METHODS = ("None", "RAFT", *FLOW_METHODS)  # what Deforum's settings may name
RAFT_REFUSAL = "RAFT needs torchvision's RAFT weights, which Salon does not fetch: use DIS or Farneback"


def check_method(option: str, method: str, allow_none: bool = True) -> None:
    """InvalidRequest naming `option` unless `method` is a flow method Salon computes (or "None")."""
    if method == "RAFT":
        raise InvalidRequest(option, RAFT_REFUSAL)
    allowed = ("None", *FLOW_METHODS) if allow_none else FLOW_METHODS
    if method not in allowed:
        raise InvalidRequest(option, f"{method!r} is not one of: {', '.join(allowed)}")


def optical_flow(first: Image.Image, second: Image.Image, method: str) -> np.ndarray:
    """The dense flow from `first` to `second` (height × width × 2, pixels, float32): first(p) ≈ second(p + flow)."""
    import cv2

    check_method("flow method", method, allow_none=False)
    a = cv2.cvtColor(np.asarray(first.convert("RGB")), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(np.asarray(second.convert("RGB")), cv2.COLOR_RGB2GRAY)
    if method == "Farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 5, 21, 5, 7, 1.2, 0)
    if method == "DIS Medium":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    else:  # DIS Fine: Deforum's own preset
        dis = cv2.DISOpticalFlow_create()
        dis.setGradientDescentIterations(192)
        dis.setFinestScale(0)
        dis.setPatchSize(8)
        dis.setPatchStride(4)
    return dis.calc(a, b, None)


def move_along(image: Image.Image, flow: np.ndarray, factor: float = 1.0) -> Image.Image:
    """The image moved along `flow` × factor: output pixel p shows the input at p − factor × flow(p)."""
    import cv2

    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = xs - np.float32(factor) * flow[..., 0]
    map_y = ys - np.float32(factor) * flow[..., 1]
    moved = cv2.remap(pixels, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(moved)


def cadence_frame(forward: Image.Image, back: Image.Image, tween: float, method: str) -> Image.Image:
    """An in-between frame at `tween` (0 = the earlier diffused frame, 1 = the later), from the earlier frame
    moved forward and the later frame moved back to its camera. Without a flow method ("None") a cross-fade;
    with one, each is first moved along the flow between them to the in-between position."""
    if method == "None":
        return blend(forward, back, tween)
    flow = optical_flow(forward, back, method)
    # forward's content is at p; back shows it at p + flow: the in-between frame shows it at p + tween × flow.
    ahead = move_along(forward, flow, tween)
    behind = move_along(back, flow, -(1 - tween))
    return blend(ahead, behind, tween)
