"""`/sdapi/v1/options`: A1111's settings as each caller sees them.

A1111 keeps one set of options for the whole server; Salon serves many people from one queue, so the
options a client sets are its own (kept in memory for its user name while the API runs): the checkpoint, the
CLIP skip, the face restorer and CodeFormer's weight its next requests use when they name none (the last two
default to the server's `face_restoration_model` and `code_former_weight`). Every other key A1111 returns is
answered with the value that describes what Salon does, read-only: setting it to another value is a 422
naming the key. `face_restorers` is A1111's `GET /sdapi/v1/face-restorers`.
"""

from __future__ import annotations

from typing import Any

from api.translate import Unsupported, model_title
from config import Settings
from core.errors import ModelNotFound, ModelRefused
from engine.faces.naming import FAMILIES, family
from engine.models.registry import ModelKind, ModelRegistry

WRITABLE = ("sd_model_checkpoint", "CLIP_stop_at_last_layers", "face_restoration_model", "code_former_weight")

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
            "face_restoration_model": mine.get(
                "face_restoration_model", self.settings.face_restoration_model
            ),
            "code_former_weight": mine.get("code_former_weight", self.settings.code_former_weight),
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
            elif key == "face_restoration_model":
                mine[key] = self._restorer(value)
            elif key == "code_former_weight":
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise Unsupported(key, f"{value!r} is not a number from 0 to 1")
                mine[key] = float(value)
            elif key in READ_ONLY:
                if value != READ_ONLY[key] and not (key == "sd_vae" and value in ("Automatic", "None")):
                    raise Unsupported(key, f"read-only in Salon (it is {READ_ONLY[key]!r})")
            else:
                raise Unsupported(key, "not an option Salon knows")
        self._by_caller[caller] = mine

    def _restorer(self, value: Any) -> str:
        """A1111's restorer name (CodeFormer, GFPGAN: whether installed or not, as A1111 lists both) or an
        installed restorer file's stem, as it will be written."""
        key = "face_restoration_model"
        if not isinstance(value, str) or not value.strip():
            raise Unsupported(key, "send CodeFormer, GFPGAN or a face restorer file's name")
        known = family(value)
        if known is not None:
            return known
        try:
            return self.registry.find_fresh(ModelKind.FACE_RESTORER, value.strip()).name
        except (ModelNotFound, ModelRefused) as error:
            raise Unsupported(key, f"{error.message} (or CodeFormer, GFPGAN)") from None


def face_restorers() -> list[dict[str, Any]]:
    """A1111's `/sdapi/v1/face-restorers`: its two restorers, CodeFormer then GFPGAN (the order A1111 sets
    them up), each with its folder as `cmd_dir` (relative to the data folder: no server path is shown)."""
    return [{"name": name, "cmd_dir": f"models/{FAMILIES[name][0]}"} for name in ("CodeFormer", "GFPGAN")]
