"""The face detector (engine/faces/retinaface.py) against facexlib's own RetinaFace.

Pinned from facexlib 0.3.0 (git 260620a), facexlib/detection/retinaface.py, run in a throwaway venv outside
the repository: its `RetinaFace(network_name="resnet50")` has the state-dict keys fingerprinted below, and
loading `random_detector()` (saved with a `module.` prefix and stripped as facexlib's init_detection_model
does) then `detect_faces(picture, conf_threshold=0.8, nms_threshold=0.4)` on the seeded picture gives the
boxes, scores and landmarks below. (Run against facexlib's class with its own random weights as well: the same
179 faces to the last bit.)"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from engine.faces.retinaface import (
    BGR_MEAN,
    CONFIDENCE,
    MIN_SIZES,
    NMS_IOU,
    STEPS,
    VARIANCE,
    RetinaFace,
    detect_faces,
    detect_raw,
    detector_state,
    empty_retinaface,
    prior_boxes,
)
from tests.tiny_faces import one_face_detector, random_detector

FACEXLIB_KEYS = 456
FACEXLIB_KEY_FINGERPRINT = "b46fe033fafdd19d"  # sha256 of "key:shape" lines, sorted, first 16 hex
FACEXLIB_BOXES = np.array(
    [
        [63.761, 57.515, 97.575, 93.805, 0.923],
        [89.348, 54.966, 122.277, 93.519, 0.913],
        [49.052, 58.818, 82.008, 91.86, 0.859],
        [64.467, 40.218, 98.755, 75.131, 0.85],
        [40.412, 11.413, 73.495, 42.209, 0.848],
        [89.489, 38.732, 123.03, 77.053, 0.847],
        [65.254, 10.884, 97.247, 42.863, 0.834],
        [33.461, 59.022, 67.912, 90.492, 0.831],
    ]
)
FACEXLIB_LANDMARKS = np.array(
    [
        [84.697, 70.515, 89.951, 79.998, 84.582, 76.819, 83.823, 75.22, 86.573, 74.638],
        [108.854, 71.497, 112.171, 79.923, 108.643, 76.217, 106.876, 75.378, 109.089, 75.972],
        [67.834, 69.822, 74.91, 80.492, 68.957, 77.192, 67.831, 75.284, 71.55, 74.736],
        [84.427, 55.269, 89.594, 64.833, 85.516, 61.511, 83.603, 58.858, 85.056, 58.467],
        [58.551, 23.266, 63.256, 31.434, 62.86, 28.374, 60.642, 30.714, 60.656, 29.733],
        [108.262, 56.484, 112.819, 63.54, 109.955, 60.351, 107.25, 59.958, 108.367, 59.825],
        [83.147, 24.494, 87.078, 31.708, 87.477, 28.489, 84.286, 29.8, 84.406, 28.722],
        [51.517, 69.79, 59.256, 80.634, 51.761, 77.732, 52.561, 74.779, 55.421, 75.471],
    ]
)


def test_the_state_dict_keys_are_facexlibs_and_the_constants_the_published_ones():
    state = RetinaFace().state_dict()
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()))
    assert len(state) == FACEXLIB_KEYS
    assert hashlib.sha256(lines.encode()).hexdigest()[:16] == FACEXLIB_KEY_FINGERPRINT
    assert MIN_SIZES == ((16, 32), (64, 128), (256, 512)) and STEPS == (8, 16, 32)
    assert VARIANCE == (0.1, 0.2) and BGR_MEAN == (104.0, 117.0, 123.0)
    assert (CONFIDENCE, NMS_IOU) == (0.97, 0.4)
    priors = prior_boxes(96, 128)
    assert len(priors) == 2 * (12 * 16 + 6 * 8 + 3 * 4)
    assert priors[0].tolist() == pytest.approx([4 / 128, 4 / 96, 16 / 128, 16 / 96])


def test_boxes_and_landmarks_match_facexlibs_on_the_same_weights():
    net = empty_retinaface().eval()
    prefixed = {"module." + k: v for k, v in random_detector().items()}  # as DataParallel saved the file
    net.load_state_dict(detector_state(prefixed), strict=True, assign=True)
    picture = np.random.default_rng(0).integers(0, 256, (96, 128, 3)).astype(np.uint8)
    faces = detect_raw(net, picture.astype(np.float32), confidence=0.8, nms_iou=0.4)
    boxes = np.array([[*f.box, f.score] for f in faces])
    landmarks = np.array([f.landmarks.reshape(-1) for f in faces])
    np.testing.assert_allclose(boxes, FACEXLIB_BOXES, atol=2e-3)
    np.testing.assert_allclose(landmarks, FACEXLIB_LANDMARKS, atol=2e-3)


def test_a_detector_that_fires_once_finds_one_face_in_the_pictures_pixels():
    net = empty_retinaface().eval()
    net.load_state_dict(one_face_detector(side=100.0), assign=True)
    picture = np.full((320, 320, 3), 128, np.uint8)  # seen at 640×640: found landmarks are scaled back by ½
    faces = detect_faces(net, picture)
    assert len(faces) == 1
    eyes = faces[0].landmarks[1] - faces[0].landmarks[0]
    assert np.linalg.norm(eyes) == pytest.approx((318.90277 - 192.98138) * 100 / 512 / 2, rel=1e-3)
    assert (faces[0].landmarks >= 0).all() and (faces[0].landmarks[:, 0] < 320).all()
    assert (faces[0].landmarks[:, 1] < 320).all()
    assert detect_faces(net, picture, confidence=1.0) == []  # above every score: nothing


def test_torch_stays_deterministic_for_the_same_picture():
    net = empty_retinaface().eval()
    net.load_state_dict(random_detector(), assign=True)
    picture = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    first = detect_faces(net, picture, confidence=0.8, short_side=None)
    again = detect_faces(net, picture, confidence=0.8, short_side=None)
    assert [f.box for f in first] == [f.box for f in again]
    assert torch.equal(
        torch.tensor(np.array([f.landmarks for f in first])),
        torch.tensor(np.array([f.landmarks for f in again])),
    )
