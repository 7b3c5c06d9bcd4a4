"""Salon's settings: one schema, read from a TOML file and the environment, passed down explicitly."""

from config.settings import Limits, Settings, load_settings

__all__ = ["Limits", "Settings", "load_settings"]
