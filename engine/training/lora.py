"""LoRA training (SD 1.x, SD 2.x and SDXL): low-rank adapters on the UNet's attention projections (and optionally the
text encoders'), learned with peft on copies of the loaded model, saved as a kohya/A1111 `.safetensors` that
`<lora:name:weight>` loads through the same code as any downloaded LoRA.

Read top to bottom: copy and wrap the model (`LoraTrainer.__init__`), compute a batch's loss (`loss`),
resume or start (`train_lora_slice`), write the kohya file (`kohya_tensors`, `save_lora`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from core.errors import InvalidRequest
from core.files import atomic_write_with
from engine.models.ldm_conversion import ldm_unet_names
from engine.models.loading import LoadedModel
from engine.prompts.conditioning import PromptChunker
from engine.prompts.lora import kohya_key
from engine.training.captions import Encoding, encode_captions, encoder_slots, text_encoders
from engine.training.loop import (
    Example,
    LoopOptions,
    LoopState,
    NoiseObjective,
    check_loop_options,
    prompt_encodings,
    render_preview,
    train_slice,
)

ADAPTER = "salon_training"
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@dataclass(frozen=True)
class LoraOptions:
    """What a LoRA run learns and how (SPEC §5)."""

    name: str
    loop: LoopOptions
    rank: int = 4
    alpha: float | None = None  # None = rank (a scale of 1)
    train_text_encoder: bool = False
    resolution: int = 512
    seed: int = 0

    @property
    def scale_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)


def check_lora_options(options: LoraOptions) -> None:
    check_loop_options(options.loop)
    if not 1 <= options.rank <= 256:
        raise InvalidRequest("rank", f"{options.rank} is not from 1 to 256")
    if options.alpha is not None and not 0 < options.alpha <= 1024:
        raise InvalidRequest("alpha", f"{options.alpha} is not above 0 and at most 1024")
    if options.resolution % 8 or not 64 <= options.resolution <= 2048:
        raise InvalidRequest("resolution", f"{options.resolution} is not a multiple of 8 from 64 to 2048")


class LoraTrainer:
    """A copy of the UNet (and text encoder) with trainable LoRA layers; the loaded model is not touched."""

    def __init__(self, model: LoadedModel, options: LoraOptions) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        self.model = model
        self.options = options
        config = LoraConfig(
            r=options.rank,
            lora_alpha=options.scale_alpha,
            target_modules=UNET_TARGETS,
            init_lora_weights="gaussian",
        )
        pipe = model.pipe
        with torch.random.fork_rng(devices=[]):  # the adapters' initial weights follow the run's seed
            torch.manual_seed(options.seed)
            self.unet = inject_adapter_in_model(config, _frozen_copy(model.unet), adapter_name=ADAPTER)
            encoders = text_encoders(model)
            if options.train_text_encoder:
                text_config = LoraConfig(
                    r=options.rank,
                    lora_alpha=options.scale_alpha,
                    target_modules=TEXT_TARGETS,
                    init_lora_weights="gaussian",
                )
                encoders = [
                    inject_adapter_in_model(text_config, _frozen_copy(encoder), adapter_name=ADAPTER)
                    for encoder in encoders
                ]
        self.text_encoders = encoders
        self.text_encoder = encoders[0]
        for root in (self.unet, *self.text_encoders):
            _only_training_adapter(root)
        # SDXL: both encoders, the states side by side and the second one's pooled vector (as the engine does).
        self.slots = encoder_slots(model, encoders)
        self.slot = self.slots[0]
        self.chunker = PromptChunker(pipe.tokenizer, {})
        self.parameters = self._trainable()
        self._encoded: dict[str, Encoding] | None = None if options.train_text_encoder else {}

    def _trainable(self) -> dict[str, torch.nn.Parameter]:
        found = {}
        roots = [("unet.", self.unet), ("te.", self.text_encoders[0])]
        roots += [(f"te{i + 1}.", encoder) for i, encoder in enumerate(self.text_encoders) if i]
        for prefix, module in roots:
            for name, parameter in module.named_parameters():
                if "lora_" in name and f".{ADAPTER}." in name:
                    parameter.data = parameter.data.float()
                    parameter.requires_grad_(True)
                    found[prefix + name] = parameter
        return found

    def encode(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cross-attention states of the captions, and SDXL's pooled vectors (None for SD 1.x); cached when
        the text encoders do not learn."""
        return encode_captions(self.slots, self.chunker, captions, self._encoded)

    def states(self, captions: Sequence[str]) -> torch.Tensor:
        return self.encode(captions)[0]

    def loss(self, objective: NoiseObjective, batch: Sequence[Example]) -> torch.Tensor:
        states, pooled = self.encode([example.caption for example in batch])
        return objective.loss(self.unet, batch, states, pooled=pooled)

    def preview(self, prompt: str, seed: int, steps: int):
        """An image of `prompt` with the adapters as they are now."""
        (states, pooled), (negative, negative_pooled) = prompt_encodings(self.slots, self.chunker, prompt)
        pair = (pooled, negative_pooled) if pooled is not None else None
        return render_preview(
            self.model, self.unet, states, negative, seed, steps, self.options.resolution, pair
        )

    def save(self, path: Path, state: LoopState, images: int) -> Path:
        return save_lora(self, path, state, images)

    def kohya_tensors(self) -> dict[str, torch.Tensor]:
        """The adapters under kohya's names: lora_unet_/lora_te_ + module path, lora_down/lora_up, alpha.

        SD 1.x UNet modules keep their diffusers paths (kohya's SD 1.x UNet uses them); SDXL's are named in
        Stability's numbering (`input_blocks.4.1.…`), as kohya's sdxl_train_network.py writes them."""
        from peft.tuners.lora import LoraLayer

        tensors: dict[str, torch.Tensor] = {}
        modules = [("lora_unet_", self.unet, "")]
        if self.options.train_text_encoder:
            if self.model.sdxl:  # kohya's SDXL names: lora_te1_ (CLIP ViT-L), lora_te2_ (OpenCLIP bigG)
                modules += [(f"lora_te{i + 1}_", e, "text_model.") for i, e in enumerate(self.text_encoders)]
            else:
                modules.append(("lora_te_", self.text_encoder, "text_model."))
        for prefix, root, path_prefix in modules:
            layers = {
                n: m for n, m in root.named_modules() if isinstance(m, LoraLayer) and ADAPTER in m.lora_A
            }
            paths = {n: path_prefix + n.removeprefix("text_model.") for n in layers}
            if root is self.unet and self.model.sdxl:
                paths = ldm_unet_names(self.unet, list(paths))
            for name, module in layers.items():
                key = kohya_key(prefix, paths[name])
                tensors[f"{key}.lora_down.weight"] = module.lora_A[ADAPTER].weight.detach().float().cpu()
                tensors[f"{key}.lora_up.weight"] = module.lora_B[ADAPTER].weight.detach().float().cpu()
                tensors[f"{key}.alpha"] = torch.tensor(self.options.scale_alpha)
        return tensors


def _only_training_adapter(root: torch.nn.Module) -> None:
    """Make the training adapter the only active one (a copied model may carry LoRAs loaded for generation,
    enabled or not)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in root.modules():
        if isinstance(module, BaseTunerLayer) and ADAPTER in getattr(module, "lora_A", {}):
            module.enable_adapters(True)
            module.set_adapter(ADAPTER)


def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    return clone


# One slice of this trainer: see engine.training.loop.train_slice (returns the loop state and the trainer).
train_lora_slice = partial(train_slice, LoraTrainer)


def base_model_version(model: LoadedModel) -> str:
    """kohya's `ss_base_model_version`: "sdxl_base_v1-0" for SDXL, else "sd" + "_v1"/"_v2" + "_v" for a
    v-prediction model (sd-scripts' `get_model_version_str_for_sd1_sd2`): "sd_v1", "sd_v2", "sd_v2_v"."""
    if model.sdxl:
        return "sdxl_base_v1-0"
    v = model.pipe.scheduler.config.get("prediction_type") == "v_prediction"
    return "sd" + ("_v2" if model.sd2 else "_v1") + ("_v" if v else "")


def save_lora(trainer: LoraTrainer, path: Path, state: LoopState, images: int) -> Path:
    """Write the kohya `.safetensors` with sd-scripts' `ss_*` metadata (atomically)."""

    from safetensors.torch import save_file

    options, model = trainer.options, trainer.model
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(options.rank),
        "ss_network_alpha": f"{options.scale_alpha:g}",
        "ss_output_name": options.name,
        "ss_sd_model_name": model.name,
        "ss_new_sd_model_hash": model.hash,
        "ss_base_model_version": base_model_version(model),
        "ss_v2": str(model.sd2),
        "ss_resolution": f"({options.resolution}, {options.resolution})",
        "ss_max_train_steps": str(options.loop.steps),
        "ss_steps": str(state.step),
        "ss_learning_rate": options.loop.learning_rate,
        "ss_train_batch_size": str(options.loop.batch_size),
        "ss_gradient_accumulation_steps": str(options.loop.gradient_accumulation),
        "ss_seed": str(options.seed),
        "ss_num_train_images": str(images),
        "ss_network_train_unet_only": str(not options.train_text_encoder),
        "ss_training_finished_at": str(time.time()),
        "ss_training_comment": "trained with Salon",
        "ss_network_args": json.dumps({}),
    }
    tensors = trainer.kohya_tensors()
    return atomic_write_with(path, lambda temp: save_file(tensors, str(temp), metadata=metadata))
