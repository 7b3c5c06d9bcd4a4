"""Settings: defaults, the TOML file, environment overrides and the Discord token."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings, load_settings
from core.errors import InvalidSettings


def test_defaults_follow_the_a1111_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.data_dir == Path("salon-data")
    assert settings.checkpoints_dir == Path("salon-data/models/Stable-diffusion")
    assert settings.lora_dir == Path("salon-data/models/Lora")
    assert settings.embeddings_path == Path("salon-data/embeddings")
    assert settings.discord_token is None and settings.limits.max_steps == 150


def test_toml_file_then_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "salon.toml"
    config.write_text(
        'data_dir = "/srv/salon"\ndefault_model = "dreamy"\n[limits]\nmax_steps = 50\nmax_batch_size = 2\n'
    )
    monkeypatch.setenv("SALON_LIMITS__MAX_STEPS", "80")
    monkeypatch.setenv("DISCORD_TOKEN", "secret-token")
    settings = load_settings(config)
    assert settings.data_dir == Path("/srv/salon") and settings.models_path == Path("/srv/salon/models")
    assert settings.default_model == "dreamy"
    assert settings.limits.max_steps == 80 and settings.limits.max_batch_size == 2
    assert settings.discord_token is not None and settings.discord_token.get_secret_value() == "secret-token"
    assert "secret-token" not in repr(settings)
    assert settings.config_file == config


def test_salon_toml_in_the_working_folder_and_salon_config_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("salon.toml").write_text('default_model = "here"\n')
    assert load_settings().default_model == "here"
    other = tmp_path / "other.toml"
    other.write_text('default_model = "there"\n')
    monkeypatch.setenv("SALON_CONFIG", str(other))
    assert load_settings().default_model == "there"


def test_bad_settings_are_reported(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('dtype = "float8"\nunknown_key = 1\n')
    with pytest.raises(InvalidSettings) as excinfo:  # one message naming each bad setting
        load_settings(config)
    assert "dtype" in str(excinfo.value) and "unknown_key" in str(excinfo.value)
    with pytest.raises(FileNotFoundError, match="missing.toml does not exist"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ValidationError):
        Settings(limits={"max_steps": 0})


def test_discord_shards_auto_a_number_or_refused(tmp_path, monkeypatch):
    assert Settings().discord.shards == "auto" and Settings().discord.shard_count is None
    config = tmp_path / "salon.toml"
    config.write_text("[discord]\nshards = 3\nshard_ids = [2, 0, 2]\n")
    settings = load_settings(config)
    assert settings.discord.shard_count == 3 and settings.discord.shard_ids == [0, 2]
    for bad in (0, -1, "many", True, 2.5):
        with pytest.raises(ValidationError, match=r"discord\.shards: .*give \"auto\" or a positive number"):
            Settings(discord={"shards": bad})
    with pytest.raises(ValidationError, match=r"discord\.shard_ids: \[2\]: give shard numbers from 0 to 1"):
        Settings(discord={"shards": 2, "shard_ids": [0, 2]})
    with pytest.raises(ValidationError, match=r"discord\.shard_ids: set discord\.shards"):
        Settings(discord={"shard_ids": [0]})
    monkeypatch.setenv("SALON_DISCORD__SHARDS", "2")
    assert load_settings().discord.shard_count == 2
