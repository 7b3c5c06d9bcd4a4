"""The default checkpoint never changes because a file appeared (issue 18, item 18).

Dreambooth's save installs a checkpoint with an owner sidecar beside it (jobs/training.py); before the fix,
with no `default_model` configured, "the single checkpoint installed" became the new one (or, with one
installed by hand already, the demo model), for every later command and, in the bot, for the whole server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli.main import main
from engine.demo import DEMO_MODEL_NAME
from engine.infotext import parse_infotext
from engine.infotext_files import read_infotext
from engine.models.registry import TRAINED_SIDECAR_SUFFIX


def _imagine_model(config: Path, out: Path) -> str:
    """`salon imagine` with no --model: the `Model:` its infotext names."""
    args = ["--config", str(config), "imagine", "a red circle", "--steps", "1", "--seed", "1"]
    assert main([*args, "--size", "64x64", "--output", str(out)]) == 0
    [png] = out.glob("*.png")
    return parse_infotext(read_infotext(png)).model


def _install_trained(checkpoints: Path, name: str, model: Path) -> None:
    """What Dreambooth's save leaves: the model (here a diffusers folder) and its owner sidecar."""
    shutil.copytree(model, checkpoints / name)
    sidecar = {"owner": "cli:ann", "guild": None, "job": 1, "trained_at": 0, "step": 3, "steps": 3}
    (checkpoints / f"{name}{TRAINED_SIDECAR_SUFFIX}").write_text(json.dumps(sidecar))


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')  # no default_model
    checkpoints = tmp_path / "data" / "models" / "Stable-diffusion"
    checkpoints.mkdir(parents=True)
    return config, checkpoints


def test_a_trained_checkpoint_does_not_replace_the_demo_model_as_default(tmp_path, tiny_sd1_dir):
    """Item 18: demo model by default; a Dreambooth result installed afterwards leaves it the default."""
    config, checkpoints = _folder(tmp_path)
    assert _imagine_model(config, tmp_path / "before") == DEMO_MODEL_NAME
    _install_trained(checkpoints, "dbstar", tiny_sd1_dir)
    assert _imagine_model(config, tmp_path / "after") == DEMO_MODEL_NAME


def test_a_hand_installed_default_survives_new_checkpoints_by_hand_or_by_training(tmp_path, tiny_sd1_dir):
    """Item 18: the one checkpoint installed by hand stays the default when a second and a trained one come."""
    config, checkpoints = _folder(tmp_path)
    shutil.copytree(tiny_sd1_dir, checkpoints / "mine")
    assert _imagine_model(config, tmp_path / "one") == "mine"
    shutil.copytree(tiny_sd1_dir, checkpoints / "another")  # sorts first, and is newer
    _install_trained(checkpoints, "dbstar", tiny_sd1_dir)
    assert _imagine_model(config, tmp_path / "three") == "mine"
    remembered = json.loads((tmp_path / "data" / "default-model.json").read_text())
    assert remembered["model"] == "mine"


def test_the_sidecar_the_registry_reads_is_the_one_training_writes():
    """Item 18: the registry recognises trained files by the sidecar jobs/training.py writes."""
    from engine.models.trained_files import OWNER_SUFFIX

    assert OWNER_SUFFIX == TRAINED_SIDECAR_SUFFIX
