"""Shared fixtures: tiny SD models in a temporary A1111-style data folder, and an engine over them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


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
    """A Salon data folder with the tiny SD 1.x model installed as `tiny` (a diffusers folder)."""
    root = tmp_path_factory.mktemp("salon-data")
    for sub in ("models/Stable-diffusion", "models/Lora", "models/VAE", "models/hypernetworks", "embeddings"):
        (root / sub).mkdir(parents=True)
    shutil.copytree(tiny_sd1_dir, root / "models/Stable-diffusion/tiny")
    return root


@pytest.fixture(scope="session")
def settings(data_dir: Path):
    from config import load_settings

    return load_settings(None, data_dir=data_dir, default_model="tiny")


@pytest.fixture(scope="session")
def engine(settings):
    from engine.runner import Engine

    return Engine(settings)
