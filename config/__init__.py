"""Salon's settings: one schema, read from a TOML file and the environment, passed down explicitly."""

from config.settings import Limits, QueueSettings, Settings, SpeedSettings, load_settings, parse_size

__all__ = ["Limits", "QueueSettings", "Settings", "SpeedSettings", "load_settings", "parse_size"]
