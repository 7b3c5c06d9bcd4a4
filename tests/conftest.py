"""Shared fixtures: a temporary A1111-style data folder and an engine whose default model is the demo model.

Tiny random SD 1.x/SDXL models (tests/tiny_models.py) cover architectures the demo model does not have.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes on two cores: one compute thread each (and in the processes they start), read by
    # torch when it is first imported, which is after this. The suite passes with any thread count.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_sd1_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_sd1

    return build_tiny_sd1(tmp_path_factory.mktemp("tiny") / "tiny-sd1")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tinyxl") / "tiny-sdxl")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_sd1_dir: Path) -> Path:
    """A Salon data folder with a tiny random SD 1.x model installed as `tiny` (a diffusers folder)."""
    root = tmp_path_factory.mktemp("salon-data")
    for sub in ("models/Stable-diffusion", "models/Lora", "models/VAE", "models/hypernetworks", "embeddings"):
        (root / sub).mkdir(parents=True)
    shutil.copytree(tiny_sd1_dir, root / "models/Stable-diffusion/tiny")
    return root


@pytest.fixture(scope="session")
def settings(data_dir: Path):
    """Settings over `data_dir` whose default model is the built-in demo model (tests run on it)."""
    from config import load_settings
    from engine.demo import DEMO_MODEL_NAME

    return load_settings(None, data_dir=data_dir, default_model=DEMO_MODEL_NAME)


@pytest.fixture(scope="session")
def engine(settings):
    from engine.runner import Engine

    return Engine(settings)
