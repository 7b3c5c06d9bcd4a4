"""The engine: owns the loaded models and runs txt2img, img2img and inpaint requests one at a time.

One `Engine` per process owns the device. It runs requests the queue has checked (engine/validation.py)
and whose seeds it has fixed, refusing only what it alone can know (a model or network file that is missing).
It resolves a request (model, LoRAs, sampler from the process's sampler table, prompt conditioning), runs the
task module batch by batch, and writes the A1111 infotext of every image. In the
speed modes "max" and "balanced" each loaded model gets a fast path (engine.speed.fast_path) and its LoRAs are
merged into the weights (engine.prompts.lora.FusedLoras); SD 3.5 / Flux get only their compiled transformer in
"max" (engine.speed.flow_compile).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from PIL import Image

from config import Settings
from core.errors import InvalidRequest
from engine.controlnet.files import ControlNetCache
from engine.controlnet.guide import prepare_guide
from engine.faces.apply import restore_generated
from engine.hires_infotext import hires_infotext
from engine.infotext import format_infotext
from engine.infotext_values import format_number, hashes_value, salon_version
from engine.models.loading import FLOW_FAMILIES, LoadedModel, load_model, resolve_device, resolve_dtype
from engine.models.registry import ModelEntry, ModelKind, ModelRegistry, native_resolution
from engine.models.vae_files import VaeSwitch
from engine.prompts.conditioning import (
    Conditioning,
    EncoderSlot,
    PromptChunker,
    blend_conditioning,
    encode_prompt_pair,
)
from engine.prompts.embeddings import EmbeddingLibrary
from engine.prompts.hypernetwork import Hypernetwork
from engine.prompts.hypernetwork_attention import applied_hypernetworks
from engine.prompts.hypernetwork_files import HypernetworkCache
from engine.prompts.lora import FusedLoras, LoraSet, LoraUse
from engine.prompts.prompt_schedule import needs_plan
from engine.prompts.prompt_syntax import ExtraNetwork, extract_extra_networks
from engine.prompts.scheduled_conditioning import PromptPlan
from engine.requests import (
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    Img2ImgRequest,
    InpaintArea,
    InpaintRequest,
    MaskedContent,
    RunControl,
    vae_choice,
    with_fixed_seeds,
)
from engine.speed.fast_path import Buckets, FastPath, configure_compiler, prepare_modules, resolve_mode
from engine.speed.invariance import batch_invariant
from engine.speed.token_merging import apply_token_merging
from engine.tasks.batching import BatchControl, batch_key
from engine.tasks.flow import flow_fast_path, run_flow
from engine.tasks.hires import hires_prepared
from engine.tasks.img2img import run_img2img
from engine.tasks.inpaint import run_inpaint
from engine.tasks.refiner import refiner_infotext, refiner_loras, refiner_modules, with_refiner
from engine.tasks.samplers import BUILTIN_SAMPLERS, ETA_SAMPLERS, SamplerTable, uses_ensd
from engine.tasks.sampling import Prepared, tiling
from engine.tasks.txt2img import run_txt2img
from engine.upscaling.hires import with_model_upscaler

log = logging.getLogger(__name__)

LORA_KINDS = ("lora", "lyco")
# A task runs one batch: (prepared request, seeds, variation seeds, control, index of the first image).
BatchRunner = Callable[[Prepared, Sequence[int], Sequence[int] | None, RunControl, int], list[Image.Image]]


def native_resolution_size(entry: ModelEntry) -> tuple[int, int]:
    side = native_resolution(entry)
    return side, side


class Engine:
    """Runs generation requests on one device, one at a time, keeping up to `speed.max_models` models loaded."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry | None = None,
        samplers: SamplerTable = BUILTIN_SAMPLERS,
    ) -> None:
        """`registry`: the process's one model registry, handed down by the composition root (app/); a new one
        from the settings when the engine is used alone (a test, a benchmark). `samplers`: the process's
        sampler table (the extensions' samplers with the built-in ones), from the composition root too."""
        self.settings = settings
        self.registry = registry if registry is not None else ModelRegistry.from_settings(settings)
        self.samplers = samplers
        self.embeddings = EmbeddingLibrary(self.registry)
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.speed_mode = resolve_mode(settings.speed.mode, self.device)
        if self.speed_mode == "max":
            configure_compiler(settings.compile_cache_dir, settings.speed, self.device)
        self._model: LoadedModel | None = None
        self._loras: LoraSet | FusedLoras | None = None
        # Loaded models (with their compiled graphs) kept for switching back: up to speed.max_models.
        self._models: OrderedDict[ModelEntry, tuple[LoadedModel, LoraSet | FusedLoras]] = OrderedDict()
        self._hypernetworks = HypernetworkCache()
        self._vaes = VaeSwitch()  # `models/VAE` files applied to the loaded checkpoints
        self._controlnets = ControlNetCache()  # `models/ControlNet` models of recent requests
        self._lock = threading.Lock()  # diffusers models are not thread-safe: one run at a time

    # ----- models -------------------------------------------------------------------------------------------
    def checkpoint(self, name: str | None) -> ModelEntry:
        """The checkpoint a request names, or the default one (see `ModelRegistry.checkpoint`)."""
        return self.registry.checkpoint(name or self.settings.default_model)

    def native_size(self, name: str | None) -> tuple[int, int]:
        """The default image size for a model: the resolution it was trained at (square)."""
        return self.registry.native_size(name or self.settings.default_model)

    def _find(self, kind: ModelKind, name: str) -> ModelEntry:
        return self.registry.find_fresh(kind, name)

    def load(self, name: str | None) -> LoadedModel:
        """Make `name` the loaded model (switching only when it differs)."""
        entry = self.checkpoint(name)
        if self._model is not None and self._model.entry == entry:
            return self._model
        if entry in self._models:
            self._models.move_to_end(entry)
            self._model, self._loras = self._models[entry]
            return self._model
        while len(self._models) >= self.settings.speed.max_models:
            self._vaes.forget(self._models.popitem(last=False)[1][0])
        self._model, self._loras = None, None
        self._free_memory()
        self._model, self._loras = self._models[entry] = self._load_new(entry)
        return self._model

    def _load_new(self, entry: ModelEntry) -> tuple[LoadedModel, LoraSet | FusedLoras]:
        """Load a checkpoint with the speed mode's settings: in the fast modes, its fast path and merged LoRAs."""
        speed = self.settings.speed
        model = load_model(entry, self.registry.short_hash(entry), self.device, self.dtype)
        model.token_grid = apply_token_merging(model.unet, speed.token_merging_ratio)
        if self.speed_mode == "off" or model.family in FLOW_FAMILIES:  # SD 3.5 / Flux: own LoRAs, fast path
            if self.speed_mode == "max" and model.family in FLOW_FAMILIES:
                model.fast = flow_fast_path(model, speed)
            return model, LoraSet(model.pipe)
        prepare_modules(model.unet, model.vae, model.sdxl, self.device)
        buckets = Buckets.from_settings(speed, native_resolution_size(entry))
        model.fast = FastPath(
            model.unet, model.vae, model.vae_scale_factor, speed, self.speed_mode, buckets, model.token_grid
        )
        return model, FusedLoras(model.pipe)

    def warm_up(
        self, names: Sequence[str] | None = None, report: Callable[[str], None] | None = None
    ) -> float:
        """Compile the fast path's buckets for `names` (default: speed.warmup_models, else the default model)
        before any job needs them; returns the seconds it took (0 when the speed mode compiles nothing)."""
        if self.speed_mode != "max":
            return 0.0
        wanted = list(names or self.settings.speed.warmup_models or [None])
        seconds = 0.0
        with self._lock:
            for name in wanted[: self.settings.speed.max_models]:
                model = self.load(name)
                assert self._loras is not None and model.fast is not None
                if model.family not in FLOW_FAMILIES:  # flow LoRAs are adapters, unloaded after each job
                    self._loras.activate([])
                seconds += model.fast.warm_up(report)
        return seconds

    def base_model(self, name: str | None) -> LoadedModel:
        """The model with no LoRA active (for training on it: adapters of earlier prompts must not leak in)."""
        model = self.load(name)
        assert self._loras is not None
        self._loras.activate([])
        self._vaes.apply(model, None)
        return model

    def _free_memory(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _vae(self, name: str | None) -> ModelEntry | None:
        """The `models/VAE` file a request names (None: the checkpoint's own)."""
        wanted = vae_choice(name)
        return None if wanted is None else self._find(ModelKind.VAE, wanted)

    # ----- tasks --------------------------------------------------------------------------------------------
    # Requests come checked and with fixed seeds from the queue. A −1 seed is still made concrete here (once,
    # per request), as a fallback for callers that use the engine directly: tests, benchmarks, tools.
    def txt2img(self, request: GenerationRequest, control: RunControl | None = None) -> GenerationResult:
        return self.txt2img_many([request], [control or RunControl()])[0]

    def txt2img_many(
        self, requests: Sequence[GenerationRequest], controls: Sequence[RunControl]
    ) -> list[GenerationResult]:
        """Several txt2img requests with one `batch_key` denoised together; each image is bit-identical (on
        the CPU) to what its request gives alone."""
        if len({batch_key(r) for r in requests}) != 1:
            raise ValueError("txt2img_many needs requests with one batch_key")
        return self._run([with_fixed_seeds(r) for r in requests], controls, run_txt2img, {})

    def img2img(self, request: Img2ImgRequest, control: RunControl | None = None) -> GenerationResult:
        request = with_fixed_seeds(request)

        def batch(prep, seeds, variation_seeds, ctl, first):
            return run_img2img(prep, request, seeds, variation_seeds, ctl, first)

        extra = {"Denoising strength": format_number(request.denoising_strength)}
        return self._run([request.params], [control or RunControl()], batch, extra, request.image)[0]

    def inpaint(self, request: InpaintRequest, control: RunControl | None = None) -> GenerationResult:
        request = with_fixed_seeds(request)

        def batch(prep, seeds, variation_seeds, ctl, first):
            return run_inpaint(prep, request, seeds, variation_seeds, ctl, first)

        extra: dict[str, str | None] = {
            "Denoising strength": format_number(request.denoising_strength),
            "Mask blur": str(request.mask_blur),
            "Masked content": None
            if request.masked_content is MaskedContent.ORIGINAL
            else request.masked_content.value,
        }
        if request.inpaint_area is InpaintArea.ONLY_MASKED:
            extra["Inpaint area"] = request.inpaint_area.value
            extra["Masked area padding"] = str(request.padding)
        return self._run([request.params], [control or RunControl()], batch, extra, request.image)[0]

    def _run(
        self,
        requests: Sequence[GenerationRequest],
        controls: Sequence[RunControl],
        run_batch: BatchRunner,
        extra: dict[str, str | None],
        init_image: Image.Image | None = None,
    ) -> list[GenerationResult]:
        """Resolve the shared model, LoRAs and sampler, condition each prompt, then denoise in batches;
        `init_image`: img2img's input, which ControlNet units without their own image read."""
        first = requests[0]
        with self._lock:
            started = time.perf_counter()
            model = self.load(first.model)
            if model.family in FLOW_FAMILIES:  # SD 3.5 and Flux: diffusers' own pipelines (engine.tasks.flow)
                return run_flow(self, model, requests, controls, extra, init_image)
            self._vaes.apply(model, self._vae(first.vae))
            networks = extract_extra_networks(first.prompt)[1]
            loras, hypernetworks = self._lora_uses(networks), self._hypernetwork_uses(networks)
            assert self._loras is not None
            self._loras.activate(loras)
            spec, schedule = self.samplers.resolve(first.sampler, first.schedule)
            step_cache = self.settings.speed.step_cache_interval
            preps = [
                Prepared(
                    model,
                    r,
                    spec,
                    schedule,
                    self._prompt_conditioning(model, r),
                    step_cache,
                    self._plan(model, r),
                    prepare_guide(
                        self.registry, self._controlnets, model, r.controlnet, init_image, (r.width, r.height)
                    ),
                )
                for r in requests
            ]
            if first.hires is not None:  # the hires pass's own sampler, CFG or prompts (engine.tasks.hires)
                preps = [self._with_hires(model, prep) for prep in preps]
            notes: list[str] = []
            if first.refiner is not None:  # A1111's refiner finishes the last pass (engine.tasks.refiner)
                refiner, notes = self._load_refiner(model, first, loras)
                preps, more = with_refiner(preps, refiner, self._prompt_conditioning, self._plan)
                notes += more
            infos = [self._infotext_params(prep, loras, extra) for prep in preps]
            with applied_hypernetworks(model.unet, hypernetworks), _eager_while(model, hypernetworks, first):
                images = self._run_slots(preps, controls, run_batch, infos)
            elapsed = time.perf_counter() - started
        count = sum(map(len, images))
        log.info("%6.2fs → %d image(s) for %d request(s) with %s", elapsed, count, len(requests), model.name)
        for note in notes:
            log.warning("%s", note)
        return [GenerationResult(tuple(f), model.name, model.hash, elapsed, tuple(notes)) for f in images]

    def _run_slots(
        self,
        preps: list[Prepared],
        controls: Sequence[RunControl],
        run_batch: BatchRunner,
        infos: list[dict[str, str | None]],
    ) -> list[list[GeneratedImage]]:
        """Every image of every request, denoised in chunks of images whose conditioning has the same length."""
        results: list[list[GeneratedImage]] = [[] for _ in preps]
        shared = preps[0]
        modules = [shared.model.unet, shared.model.vae, *refiner_modules(shared)]
        # Bit-identical batching on the CPU costs the fast kernels the fast path is for: the speed modes give
        # batched images equal to solo ones within float tolerance instead.
        fast = shared.model.fast is not None
        invariant = contextlib.nullcontext() if fast else batch_invariant(modules, shared.model.device)
        with tiling(shared.model, shared.params.tiling), invariant:
            for chunk in _chunks(_slots(preps), preps, self._max_batch(preps)):
                merged = _merge(shared, [preps[s.request] for s in chunk])
                variation = [s.variation_seed for s in chunk] if chunk[0].variation_seed is not None else None
                control = BatchControl(chunk, controls)
                images = run_batch(merged, [s.seed for s in chunk], variation, control, chunk[0].index)
                images = restore_generated(self.registry, preps, chunk, images, self.device, infos)
                for slot, image in zip(chunk, images, strict=True):
                    p = preps[slot.request].params
                    info = {**infos[slot.request], **refiner_infotext(preps[slot.request])}
                    text = self._infotext(p, info, slot.seed, slot.variation_seed)
                    results[slot.request].append(
                        GeneratedImage(image, slot.seed, slot.variation_seed, text, slot.index)
                    )
        return results

    def _load_refiner(
        self, base: LoadedModel, p: GenerationRequest, loras: list[LoraUse]
    ) -> tuple[LoadedModel | None, list[str]]:
        """The request's refiner with the request's VAE file and the LoRAs that fit it, and notes on those that
        do not (engine.tasks.refiner); None when it is the base model (A1111 skips it)."""
        assert p.refiner is not None
        if self._find(ModelKind.CHECKPOINT, p.refiner) == base.entry:
            return None, []
        refiner = self.load(p.refiner)
        assert self._loras is not None
        self._vaes.apply(refiner, self._vae(p.vae))
        return refiner, refiner_loras(self._loras, loras, refiner)

    def _max_batch(self, preps: list[Prepared]) -> int:
        """Images per denoising batch: the engine's cap, or a request's own batch size if that is larger."""
        return max(self.settings.limits.max_batch_size, *(p.params.batch_size for p in preps))

    # ----- prompt -------------------------------------------------------------------------------------------
    def _lora_uses(self, networks: list[ExtraNetwork]) -> list[LoraUse]:
        """The LoRAs a prompt's tags ask for; refuses tags of kinds that are neither LoRA nor hypernetwork."""
        uses = []
        for network in networks:
            if network.kind in LORA_KINDS:
                entry = self._find(ModelKind.LORA, network.name)
                uses.append(LoraUse(entry, self.registry.short_hash(entry), network.multiplier))
            elif network.kind != "hypernet":
                raise InvalidRequest(
                    "prompt",
                    f"unknown extra network <{network.kind}:…>; "
                    "supported: <lora:name:weight>, <hypernet:name:strength>",
                )
        return uses

    def _hypernetwork_uses(self, networks: list[ExtraNetwork]) -> list[tuple[Hypernetwork, float]]:
        """The hypernetworks of a prompt's `<hypernet:name:strength>` tags, loaded, in prompt order (A1111)."""
        uses = []
        for network in networks:
            if network.kind == "hypernet":
                entry = self._find(ModelKind.HYPERNETWORK, network.name)
                uses.append((self._hypernetworks.get(entry), network.multiplier))
        return uses

    def _prompt_conditioning(self, model: LoadedModel, request: GenerationRequest) -> Conditioning:
        """The prompt without its <lora:…>/<hypernet:…> tags, and the negative prompt, through the text encoders."""
        prompt = extract_extra_networks(request.prompt)[0]
        conditioning = self._conditioning(model, prompt, request.negative_prompt, request.clip_skip)
        blend = request.blend
        if blend is None or blend.weight == 0:
            return conditioning
        other_prompt = extract_extra_networks(blend.prompt)[0]
        other = self._conditioning(model, other_prompt, blend.negative_prompt, request.clip_skip)
        chunks = max(conditioning.cond.shape[1], other.cond.shape[1]) // 77
        if conditioning.cond.shape[1] < chunks * 77:
            conditioning = self._conditioning(
                model, prompt, request.negative_prompt, request.clip_skip, chunks
            )
        if other.cond.shape[1] < chunks * 77:
            other = self._conditioning(model, other_prompt, blend.negative_prompt, request.clip_skip, chunks)
        return blend_conditioning(conditioning, other, blend.weight)

    def _with_hires(self, model: LoadedModel, prep: Prepared) -> Prepared:
        def conditioning_of(r: GenerationRequest) -> Conditioning:
            return self._prompt_conditioning(model, r)

        prep = hires_prepared(prep, self.samplers, conditioning_of, lambda r: self._plan(model, r))
        return with_model_upscaler(
            prep, self.registry, self.device
        )  # a model upscaler named by the hires fix

    def _plan(self, model: LoadedModel, request: GenerationRequest) -> PromptPlan | None:
        """Prompt editing, alternation or AND in the prompt (without its tags) or the negative prompt: the plan
        of each step's conditioning, encoded as the steps need it; None for a constant prompt."""
        prompt = extract_extra_networks(request.prompt)[0]
        if not needs_plan(prompt, request.negative_prompt):
            return None
        if request.blend is not None and request.blend.weight != 0:
            raise InvalidRequest(
                "prompt", "prompt editing, alternation and AND cannot be blended with a prompt"
            )

        def encode(text: str, negative: str, chunks: int) -> Conditioning:
            return self._conditioning(model, text, negative, request.clip_skip, chunks)

        return PromptPlan(prompt, request.negative_prompt, encode)

    def _conditioning(
        self, model: LoadedModel, prompt: str, negative: str, clip_skip: int, min_chunks: int = 0
    ) -> Conditioning:
        pipe = model.pipe
        slots = []
        if pipe.text_encoder is not None:  # an SDXL refiner has only the second text encoder
            tok = pipe.tokenizer
            slots.append(EncoderSlot("clip_l", tok, pipe.text_encoder, tok.pad_token_id, model.sdxl))
        if model.sdxl:
            tok2 = pipe.tokenizer_2
            slots.append(EncoderSlot("clip_g", tok2, pipe.text_encoder_2, tok2.pad_token_id, True))
        widths = {s.key: int(s.encoder.config.hidden_size) for s in slots}
        usable = self.embeddings.for_encoders(widths)
        chunker = PromptChunker(slots[0].tokenizer, usable, self.embeddings.misfits)
        zero_negative = model.sdxl and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", True))
        clip_skip = 1 if model.sd2 else clip_skip  # A1111 ignores CLIP skip on SD 2's OpenCLIP (penultimate)
        return encode_prompt_pair(slots, chunker, prompt, negative, clip_skip, zero_negative, min_chunks)

    # ----- infotext -----------------------------------------------------------------------------------------
    def _infotext_params(
        self, prep: Prepared, loras: list[LoraUse], extra: dict[str, str | None]
    ) -> dict[str, str | None]:
        p = prep.params
        info: dict[str, str | None] = {
            "Steps": str(p.steps),
            "Sampler": prep.spec.name,
            "Schedule type": prep.schedule,
            "CFG scale": format_number(p.cfg_scale),
            "Size": f"{p.width}x{p.height}",
            "Model hash": prep.model.hash,
            "Model": prep.model.name,
            **self._vae_infotext(prep.model),
            "Clip skip": str(p.clip_skip) if p.clip_skip > 1 else None,
            "Tiling": "True" if p.tiling else None,
            "RNG": "CPU",
            **_seed_extras(prep),
            **extra,
        }
        if p.hires is not None:
            second = prep.hires or prep
            info.update(
                hires_infotext(p, (prep.spec.name, prep.schedule), (second.spec.name, second.schedule))
            )
        active = [u for u in loras if u.weight != 0]
        info["Lora hashes"] = hashes_value([(u.entry.name, u.short_hash) for u in active])
        ti = [(e.name, self.registry.short_hash(e.entry)) for e in prep.conditioning.embeddings_used]
        info["TI hashes"] = hashes_value(ti)
        if p.blend is not None and p.blend.weight != 0:  # Salon's keys: what a Deforum frame mixed in
            info["Blend prompt"] = p.blend.prompt
            info["Blend negative prompt"] = p.blend.negative_prompt or None
            info["Blend weight"] = format_number(p.blend.weight)
        if prep.controlnet is not None:
            info.update(prep.controlnet.infotext())
        if prep.model.token_grid is not None:
            info["Token merging ratio"] = format_number(prep.model.token_grid.ratio)
        if prep.step_cache > 1:  # Salon's key: the images are not the exact ones
            info["Step cache interval"] = str(prep.step_cache)
        info["Version"] = salon_version()
        return info

    def _vae_infotext(self, model: LoadedModel) -> dict[str, str | None]:
        """A1111's `VAE hash` (10 hex of the file's sha256) and `VAE` (its file name) of a VAE file in use."""
        entry = self._vaes.applied(model)
        if entry is None:
            return {}
        return {"VAE hash": self.registry.short_hash(entry), "VAE": entry.path.name}

    def _infotext(
        self, p: GenerationRequest, info: dict[str, str | None], seed: int, v_seed: int | None
    ) -> str:
        params = dict(info)
        params["Seed"] = str(seed)
        if v_seed is not None:
            params["Variation seed"] = str(v_seed)
            params["Variation seed strength"] = format_number(p.variation_strength)
        return format_infotext(p.prompt, p.negative_prompt, params)


def _seed_extras(prep: Prepared) -> dict[str, str | None]:
    """A1111's `Seed resize from`, `ENSD` (where the sampler uses it) and the sampler's eta key (when it is
    not the sampler's default)."""
    p = prep.params
    info: dict[str, str | None] = {}
    if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0:
        info["Seed resize from"] = f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
    if uses_ensd(prep.spec.name, p.eta, p.eta_noise_seed_delta):
        info["ENSD"] = str(p.eta_noise_seed_delta)
    if prep.spec.name in ETA_SAMPLERS and p.eta is not None:
        key, default = ETA_SAMPLERS[prep.spec.name]
        info[key] = None if p.eta == default else format_number(p.eta)
    return info


def _eager_while(model: LoadedModel, hypernetworks: list, request: GenerationRequest):
    """The fast path stays eager while a request changes the modules (hypernetworks' processors, tiling's
    circular padding): compiling those would recompile per request."""
    reason = "hypernetwork" if hypernetworks else "tiling" if request.tiling else None
    if model.fast is None or reason is None:
        return contextlib.nullcontext()
    return model.fast.eager_while(reason)


@dataclass(frozen=True)
class _Slot:
    """One image to make: which request it belongs to, its index there, and its seeds."""

    request: int
    index: int
    seed: int
    variation_seed: int | None


def _slots(preps: list[Prepared]) -> list[_Slot]:
    """A1111 seeds for every image: seed + i (and variation seed + i), from the request's fixed seeds."""
    slots = []
    for number, prep in enumerate(preps):
        p = prep.params
        seed = p.seed
        variation = p.variation_seed if p.variation_strength > 0 else None
        assert seed >= 0 and (variation is None or variation >= 0), "seeds are fixed before a run"
        for i in range(p.batch_size * p.batch_count):
            slots.append(_Slot(number, i, seed + i, variation + i if variation is not None else None))
    return slots


def _chunks(slots: list[_Slot], preps: list[Prepared], size: int) -> list[list[_Slot]]:
    """Slots in request order, cut into batches of `size` that share a conditioning length."""
    by_length: dict[int, list[_Slot]] = {}
    for slot in slots:
        by_length.setdefault(preps[slot.request].conditioning.cond.shape[1], []).append(slot)
    return [group[i : i + size] for group in by_length.values() for i in range(0, len(group), size)]


def _merge(shared: Prepared, members: list[Prepared]) -> Prepared:
    """One Prepared for a batch: the shared settings, each image's own conditioning stacked."""
    if all(m is members[0] for m in members) or members[0].plan is not None:
        return members[0]  # a plan's requests share one batch_key: one prompt and negative prompt
    stacked = _stack([m.conditioning for m in members])
    hires = shared.hires
    if hires is not None and hires.plan is None:  # the hires pass's conditionings, stacked the same way
        hires = replace(hires, conditioning=_stack([m.hires.conditioning for m in members if m.hires]))
    return replace(shared, conditioning=stacked, plan=None, hires=hires)


def _stack(conds: list[Conditioning]) -> Conditioning:
    pooled = conds[0].pooled_cond is not None
    return Conditioning(
        torch.cat([c.cond for c in conds]),
        torch.cat([c.uncond for c in conds]),
        torch.cat([c.pooled_cond for c in conds]) if pooled else None,
        torch.cat([c.pooled_uncond for c in conds]) if pooled else None,
    )
