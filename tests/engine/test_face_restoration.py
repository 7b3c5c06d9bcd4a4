"""Face restoration (engine/faces) on random-weight restorers built from spandrel's own architectures and
RetinaFace detectors whose heads fire on purpose: the folders and their kinds, detection through the gates,
refusals by name (no detector, no restorer, an upscaler given as a restorer, a pickle with code), paste-back
leaving pixels outside the face's square unchanged, no face = the image unchanged, visibility, the Extras
keys, and generation's "Restore faces" with its infotext."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import InvalidRequest, ModelNotFound, ModelRefused
from engine.faces.files import FaceModels, FaceRestorer
from engine.faces.naming import check_restoration, postprocess_keys, restorer_entry
from engine.faces.restore import FACE_TEMPLATE, align_face, restore_faces, restore_found, with_visibility
from engine.faces.retinaface import Face
from engine.infotext import parse_infotext
from engine.models.registry import HashCache, ModelKind, ModelRegistry, sha256_file
from tests.engine.helpers import request
from tests.tiny_faces import (
    SMALL_SIDE,
    detect_small,
    gfpgan,
    one_face_detector,
    save_state,
    state_of,
    tiny_codeformer,
    tiny_restoreformer,
)
from tests.tiny_upscalers import save_upscaler, tiny_esrgan

DETECTOR = "detection_Resnet50_Final.pth"


def _registry(models: Path) -> ModelRegistry:
    faces = (ModelKind.FACE_RESTORER, ModelKind.FACE_DETECTOR)
    folders = {
        ModelKind.CHECKPOINT: models / "Stable-diffusion",
        **{kind: models / "GFPGAN" for kind in faces},
    }
    more = {kind: (models / "Codeformer",) for kind in faces}
    return ModelRegistry(folders, HashCache(models / "hashes.json"), more_folders=more)


def _picture(size: tuple[int, int] = (160, 120), seed: int = 3) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _install(models: Path, side: float = 100.0) -> None:
    save_state(state_of(tiny_restoreformer()), models / "GFPGAN" / "RestoreFormer.safetensors")
    torch.save(one_face_detector(side), models / "GFPGAN" / DETECTOR)


def test_face_folders_list_restorers_and_the_detector_by_kind_with_autov2_hashes(tmp_path):
    _install(tmp_path)
    # Listing reads names and hashes only: a small state dict stands for CodeFormer's (loaded further down).
    save_state(state_of(tiny_restoreformer(1)), tmp_path / "Codeformer" / "codeformer-v0.1.0.pth")
    (tmp_path / "Codeformer" / "parsing_parsenet.pth").write_bytes(b"not used")
    registry = _registry(tmp_path)
    assert registry.names(ModelKind.FACE_RESTORER) == ["RestoreFormer", "codeformer-v0.1.0"]
    assert registry.names(ModelKind.FACE_DETECTOR) == ["detection_Resnet50_Final"]
    entry = registry.find(ModelKind.FACE_RESTORER, "restoreformer")
    assert registry.short_hash(entry) == sha256_file(entry.path)[:10]
    assert restorer_entry(registry, "codeformer").name == "codeformer-v0.1.0"  # A1111's name → its folder
    assert check_restoration(registry, "CodeFormer", 0.5) == "CodeFormer"
    assert check_restoration(registry, "restoreformer", 0.5) == "RestoreFormer"
    with pytest.raises(ModelNotFound, match=r"GFPGAN needs a restorer file in models/GFPGAN"):
        restorer_entry(_registry(tmp_path / "none"), "GFPGAN")
    with pytest.raises(InvalidRequest, match="code_former_weight"):
        check_restoration(registry, "CodeFormer", 1.5)


@pytest.fixture(scope="module")
def restorer_files(tmp_path_factory) -> Path:
    """models/GFPGAN with RestoreFormer and GFPGANv1.4, models/Codeformer with codeformer-v0.1.0: random
    weights, written once for the module (GFPGAN alone is 86 M parameters)."""
    models = tmp_path_factory.mktemp("restorers")
    save_state(state_of(tiny_restoreformer()), models / "GFPGAN" / "RestoreFormer.safetensors")
    save_state(state_of(tiny_codeformer()), models / "Codeformer" / "codeformer-v0.1.0.pth")
    save_state(state_of(gfpgan()), models / "GFPGAN" / "GFPGANv1.4.safetensors")
    return models


@pytest.fixture(scope="module")
def restorers(restorer_files) -> dict[str, FaceRestorer]:
    """The three files loaded through FaceModels (spandrel's modules), once for the module."""
    registry, models = _registry(restorer_files), FaceModels()
    return {name: models.restorer(registry, name) for name in ("RestoreFormer", "CodeFormer", "GFPGAN")}


def test_restorers_are_detected_by_spandrel_through_the_gates(restorers):
    found = restorers
    assert {n: (r.architecture, r.file) for n, r in found.items()} == {
        "RestoreFormer": ("RestoreFormer", "RestoreFormer"),
        "CodeFormer": ("CodeFormer", "codeformer-v0.1.0"),
        "GFPGAN": ("GFPGAN", "GFPGANv1.4"),
    }
    face = torch.zeros(1, 3, 512, 512)
    out = found["RestoreFormer"].restore(face, 0.5)
    assert out.shape == (1, 3, 512, 512)


# GFPGAN and CodeFormer run at 512 only: spandrel builds GFPGAN at its one size (512, channel multiplier 2),
# and CodeFormer's forward reshapes its latent to 16×16 whatever its state dict says, so only its transformer
# is made small (tiny_codeformer). Measured on 2 cores under a load of about 5: one forward 6.5 s (GFPGAN) and
# 15 to 19 s (CodeFormer).
FACE_BOX = (slice(55, 105), slice(55, 105))  # inside the face of _face_at((80, 80), 100)


def test_codeformer_restores_through_the_real_path_and_its_weight_takes_effect(restorers):
    restorer = restorers["CodeFormer"]
    picture, face = _picture((160, 160)), _face_at((80.0, 80.0), 100.0)
    before = np.asarray(picture, np.int16)[FACE_BOX]
    most = np.asarray(restore_found(picture, restorer, [face], 0.0), np.int16)[FACE_BOX]  # 0: most effect
    least = np.asarray(restore_found(picture, restorer, [face], 1.0), np.int16)[FACE_BOX]
    assert np.abs(most - before).mean() > 1 and np.abs(least - before).mean() > 1
    assert np.abs(most - least).mean() > 1  # the weight reaches the arch's forward (fusion of the encoder)


def test_gfpgan_restores_through_the_real_path(restorers):
    restorer = restorers["GFPGAN"]
    picture, face = _picture((160, 160)), _face_at((80.0, 80.0), 100.0)
    out = np.asarray(restore_found(picture, restorer, [face], 0.5), np.int16)
    before = np.asarray(picture, np.int16)
    assert np.abs(out[FACE_BOX] - before[FACE_BOX]).mean() > 1
    assert np.array_equal(out[:20, :20], before[:20, :20])  # far from the face: untouched


def test_an_upscaler_given_as_a_restorer_and_a_pickle_with_code_are_refused(tmp_path):
    save_upscaler(tiny_esrgan(4), tmp_path / "GFPGAN" / "4x-Tiny.pth")
    registry = _registry(tmp_path)
    with pytest.raises(ModelRefused, match=r"4x-Tiny.pth is an upscaler \(ESRGAN, ×4\), not a face restorer"):
        FaceModels().restorer(registry, "4x-Tiny")

    class Canary:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    torch.save({"params_ema": Canary()}, tmp_path / "GFPGAN" / "Evil.pth")
    (tmp_path / "GFPGAN" / "Raw.pth").write_bytes(pickle.dumps({"x": Canary()}))
    for name in ("Evil", "Raw"):
        with pytest.raises(ModelRefused, match="weights_only"):
            FaceModels().restorer(_registry(tmp_path), name)
    assert not (tmp_path / "ran").exists()


def test_without_a_detector_restoration_is_refused_naming_the_file_and_folders(tmp_path):
    save_state(state_of(tiny_restoreformer()), tmp_path / "GFPGAN" / "RestoreFormer.safetensors")
    registry = _registry(tmp_path)
    message = r"detection_Resnet50_Final.pth .* in models/GFPGAN or models/Codeformer"
    with pytest.raises(ModelNotFound, match=message):
        check_restoration(registry, "RestoreFormer", 0.5)
    with pytest.raises(ModelNotFound, match=message):
        FaceModels().detector(registry)


def _face_at(centre: tuple[float, float], side: float) -> Face:
    points = (FACE_TEMPLATE - 256.0) * (side / 512.0) + np.asarray(centre, np.float32)
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return Face((float(x0), float(y0), float(x1), float(y1)), 0.99, points.astype(np.float32))


def test_paste_back_changes_the_face_square_only(tmp_path):
    registry = _registry(tmp_path)
    _install(tmp_path)
    restorer = FaceModels().restorer(registry, "RestoreFormer")
    picture = _picture()
    face = _face_at((60.0, 50.0), 60.0)
    restored = np.asarray(restore_found(picture, restorer, [face], 0.5), np.int16)
    before = np.asarray(picture, np.int16)
    # The aligned square, mapped back into the picture: a 60-pixel face fills about 60×512/side² around it.
    _, matrix = align_face(np.asarray(picture), face.landmarks)
    inverse = np.vstack([cv2_invert(matrix), [0, 0, 1]])
    corners = np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]], np.float64) @ inverse.T
    x0, y0 = np.floor(corners[:, :2].min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners[:, :2].max(axis=0)).astype(int)
    outside = np.ones(before.shape[:2], bool)
    outside[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = False
    assert outside.sum() > 0.4 * outside.size
    assert np.array_equal(restored[outside], before[outside])
    assert np.abs(restored[~outside] - before[~outside]).mean() > 1


def cv2_invert(matrix: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(matrix)


def test_no_face_found_leaves_the_image_unchanged_with_a_note(tmp_path, caplog):
    _install(tmp_path)
    registry = _registry(tmp_path)
    models = FaceModels()
    restorer = models.restorer(registry, "RestoreFormer")
    picture = _picture()
    with caplog.at_level(logging.INFO, logger="engine.faces.restore"):
        same = restore_faces(picture, restorer, lambda rgb: [], 0.5)
    assert same is picture and "no face found in a 160x120 image" in caplog.text
    tiny = _face_at((80.0, 60.0), 10.0)  # eyes under 5 pixels apart: skipped, as A1111 does
    assert restore_faces(picture, restorer, lambda rgb: [tiny], 0.5) is picture


def test_the_detector_file_finds_a_face_and_restoration_runs_end_to_end(tmp_path):
    _install(tmp_path, side=200.0 * SMALL_SIDE / 640)  # a 62-pixel face, seen at a shorter side of 128
    registry, models = _registry(tmp_path), FaceModels(short_side=SMALL_SIDE)
    picture = _picture((200, 200))
    restorer, detector = models.restorer(registry, "RestoreFormer"), models.detector(registry)
    out = restore_faces(picture, restorer, detector, 0.5, models.short_side)
    assert out.size == picture.size
    changed = np.abs(np.asarray(out, np.int16) - np.asarray(picture, np.int16)).sum(axis=2) > 0
    assert 0 < changed.mean() < 0.9  # one face's square, not the whole picture


def test_visibility_blends_with_the_input_and_extras_keys_are_a1111s():
    a, b = _picture(seed=1), _picture(seed=2)
    assert np.array_equal(np.asarray(with_visibility(a, b, 0.0)), np.asarray(a))
    assert with_visibility(a, b, 1.0) is b
    half = np.asarray(with_visibility(a, b, 0.5), np.int16)
    assert np.abs(half - (np.asarray(a, np.int16) + np.asarray(b, np.int16)) / 2).max() <= 1
    assert postprocess_keys(0.5, 1, 0.25) == {
        "GFPGAN visibility": "0.5",
        "CodeFormer visibility": "1.0",
        "CodeFormer weight": "0.25",
    }
    assert postprocess_keys(0, 0, 0.5) == {}


def test_generation_restores_faces_and_writes_a1111s_infotext(engine, settings, monkeypatch):
    folder = settings.models_path / "GFPGAN"  # the session's models: removed afterwards
    installed = [save_state(state_of(tiny_restoreformer()), folder / "RestoreFormerTest.safetensors")]
    installed.append(folder / DETECTOR)
    torch.save(one_face_detector(300.0 * detect_small(monkeypatch)), installed[1])
    try:
        plain = engine.txt2img(request()).images[0]
        restored = engine.txt2img(request(face_restorer="RestoreFormerTest")).images[0]
        assert parse_infotext(restored.infotext).params["Face restoration"] == "RestoreFormerTest"
        assert (
            "Face restoration: RestoreFormerTest, Size: 64x64" in restored.infotext
        )  # where A1111 writes it
        assert "Face restoration" not in parse_infotext(plain.infotext).params
        assert not np.array_equal(np.asarray(plain.image), np.asarray(restored.image))
        with pytest.raises(ModelNotFound, match="no face restorer named 'Nope'"):
            engine.txt2img(request(face_restorer="Nope"))
    finally:
        for path in installed:
            path.unlink(missing_ok=True)
