"""Fixtures of the SD 3.5 / Flux tests: a data folder with tiny random-weight SD 3.5, Flux dev and Flux schnell
diffusers folders (tests/engine/flow_builders.py), and an engine over it — one per test module."""

from __future__ import annotations

import pytest

from config import load_settings
from engine.runner import Engine
from tests.engine.flow_builders import flux_folder, sd3_folder


@pytest.fixture(scope="module")
def flow_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-data")
    checkpoints = root / "models" / "Stable-diffusion"
    sd3_folder(checkpoints / "tiny-sd3")
    flux_folder(checkpoints / "tiny-flux")
    flux_folder(checkpoints / "tiny-schnell", guidance=False)
    return root


@pytest.fixture(scope="module")
def flow_engine(flow_root):
    return Engine(load_settings(None, data_dir=flow_root))
