"""Salon's settings: one schema, read from a TOML file and the environment, passed down explicitly."""

from config.settings import Limits, QueueSettings, Settings, load_settings

__all__ = ["Limits", "QueueSettings", "Settings", "load_settings"]
