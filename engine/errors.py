"""Typed errors of the engine. Front ends turn them into user messages; nothing here knows Discord."""

from __future__ import annotations


class SalonError(Exception):
    """Base of every error Salon raises on purpose."""


class InvalidRequest(SalonError, ValueError):
    """A user-supplied option is not acceptable. `option` names it; the message says what is allowed."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}")


class ModelNotFound(InvalidRequest):
    """A model, LoRA, embedding or hypernetwork name that the registry does not know."""


class ModelRefused(ModelNotFound):
    """A model name whose file is installed but refused (a pickle, a lying header, a link out of the folders)."""


class InvalidImage(InvalidRequest):
    """An uploaded file that is not an image we accept (truncated, empty, too many pixels, wrong type)."""


class UnsafeModelFile(SalonError):
    """A model file refused by the safety gate (not safetensors, bad header, pickle where none is allowed)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"refused model file {path}: {reason}")


class JobCancelled(SalonError):
    """Raised inside a generation when its cancel flag is set; the run stops between steps."""
