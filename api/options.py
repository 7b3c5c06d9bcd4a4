"""`/sdapi/v1/options`: A1111's settings as each caller sees them.

A1111 keeps one set of options for the whole server; Salon serves many people from one queue, so the
options a client sets are its own (kept in memory for its user name while the API runs): the checkpoint and
the CLIP skip its next requests use when they name none. Every other key A1111 returns is answered with the
value that describes what Salon does, read-only: setting it to another value is a 422 naming the key.
"""

from __future__ import annotations

from typing import Any

from api.translate import Unsupported, model_title
from config import Settings
from core.errors import ModelNotFound
from engine.models.registry import ModelRegistry

WRITABLE = ("sd_model_checkpoint", "CLIP_stop_at_last_layers")

# A1111's options whose values Salon follows and cannot change (a representative part of A1111's
# `shared.opts`, v1.10); keys a client reads to learn how the server saves and previews.
READ_ONLY: dict[str, Any] = {
    "samples_save": True,
    "samples_format": "png",
    "samples_filename_pattern": "",
    "save_images_add_number": True,
    "grid_save": False,
    "grid_format": "png",
    "enable_pnginfo": True,
    "save_txt": False,
    "jpeg_quality": 80,
    "export_for_4chan": False,
    "outdir_samples": "",
    "outdir_txt2img_samples": "",
    "outdir_img2img_samples": "",
    "outdir_grids": "",
    "save_to_dirs": True,
    "upscaler_for_img2img": None,
    "face_restoration": False,
    "face_restoration_model": None,
    "sd_vae": "Automatic",
    "sd_vae_as_default": True,
    "sd_checkpoint_cache": 0,
    "sd_vae_checkpoint_cache": 0,
    "inpainting_mask_weight": 1.0,
    "initial_noise_multiplier": 1.0,
    "img2img_color_correction": False,
    "img2img_fix_steps": False,
    "enable_emphasis": True,
    "enable_batch_seeds": True,
    "comma_padding_backtrack": 20,
    "upcast_attn": False,
    "randn_source": "GPU",
    "eta_ddim": 0.0,
    "eta_ancestral": 1.0,
    "eta_noise_seed_delta": 0,
    "s_churn": 0.0,
    "s_tmin": 0.0,
    "s_tmax": 0.0,
    "s_noise": 1.0,
    "live_previews_enable": True,
    "show_progress_every_n_steps": 5,
    "show_progress_type": "Approx cheap",
    "interrupt_after_current": True,
    "api_enable_requests": False,
    "api_forbid_local_requests": True,
}


class CallerOptions:
    """Each caller's writable options, and the read-only rest."""

    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._by_caller: dict[str, dict[str, Any]] = {}

    def of(self, caller: str) -> dict[str, Any]:
        """What the caller set (the keys of WRITABLE it gave), for its requests' defaults."""
        return dict(self._by_caller.get(caller, {}))

    def read(self, caller: str) -> dict[str, Any]:
        """A1111's `GET /sdapi/v1/options` for the caller."""
        mine = self._by_caller.get(caller, {})
        entry = self.registry.checkpoint(mine.get("sd_model_checkpoint") or self.settings.default_model)
        title = model_title(self.registry, entry)
        return {
            **READ_ONLY,
            "show_progress_every_n_steps": self.settings.queue.preview_every_steps,
            "sd_model_checkpoint": title,
            "sd_checkpoint_hash": self.registry.sha256(entry),
            "CLIP_stop_at_last_layers": mine.get("CLIP_stop_at_last_layers", 1),
        }

    def write(self, caller: str, values: dict[str, Any]) -> None:
        """Set the caller's options; every key is checked before any is kept."""
        mine = dict(self._by_caller.get(caller, {}))
        for key, value in values.items():
            if key == "sd_model_checkpoint":
                if not isinstance(value, str) or "/" in value or "\\" in value:
                    raise Unsupported(key, "give a model by the name /sdapi/v1/sd-models lists, not a path")
                try:
                    mine[key] = self.registry.checkpoint(value.replace(".safetensors", "")).name
                except ModelNotFound as error:
                    raise Unsupported(key, error.message) from None
            elif key == "CLIP_stop_at_last_layers":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
                    raise Unsupported(key, f"{value!r} is not a whole number from 1 to 12")
                mine[key] = value
            elif key in READ_ONLY:
                if value != READ_ONLY[key] and not (key == "sd_vae" and value in ("Automatic", "None")):
                    raise Unsupported(key, f"read-only in Salon (it is {READ_ONLY[key]!r})")
            else:
                raise Unsupported(key, "not an option Salon knows")
        self._by_caller[caller] = mine
