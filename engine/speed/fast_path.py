"""The fast path: the UNet and the VAE decoder compiled for a bounded set of shapes, everything else eager.

Measured on an H100, a plain SD 1.5 image takes about a second because
each UNet call is bound by Python and kernel launches, not by the GPU; replaying compiled CUDA graphs makes
it about 5× faster, and batching waiting images gives about 7× the images per second. Compiling costs
80–90 s, so Salon uses compiled code only for the shapes it warmed up (sizes × batch buckets × prompt
lengths) and runs every other shape eagerly: a user's job never waits for a compile. The batch and prompt
length are symbolic in the compiled code (`dynamic_batch`), so one compile per size serves every bucket; on
CUDA each bucket still records its own graph. A batch is padded up to its bucket by repeating its last row
(the UNet and the VAE compute every row independently of the others), and the padding is cut off the result.

Modes (config `speed.mode`): "max" compiles; "balanced" applies the same model settings (half precision,
channels-last memory, PyTorch's SDPA attention, tuned cuDNN) without compiling, so there is no warm-up;
"off" is plain eager. Requests that change the modules themselves (tiling's padding mode, hypernetworks'
attention processors) run eagerly while they do: compiling them would recompile per request. LoRAs are
merged into the weights in place (`engine.prompts.lora.FusedLoras`), which the compiled graphs read, so a LoRA
never recompiles anything.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from config import SpeedSettings, parse_size
from engine.speed.step_cache import StepCache, cached_step, unet_forward
from engine.speed.token_merging import LatentGrid

log = logging.getLogger(__name__)

TOKEN_LENGTHS = (77, 154)  # prompt lengths warmed up: one and two 75-token chunks (A1111 pads to 77 × k)
WARM_CALLS = 3  # per shape: compile and run, record the CUDA graph, replay it once


def resolve_mode(mode: str, device: torch.device) -> str:
    """ "auto" → "max" on CUDA (where compiling pays), "off" elsewhere."""
    if mode == "auto":
        return "max" if device.type == "cuda" else "off"
    return mode


class CompiledPath:
    """What the compiled paths (the UNet's FastPath, SD 3.5/Flux's FlowFastPath) share: staying eager while a
    reason lasts (the modules are changed meanwhile), and the warm-up's report and clock."""

    _eager_reasons: list[str]
    device: torch.device
    warmup_s: float

    @contextmanager
    def eager_while(self, reason: str | None) -> Iterator[None]:
        """Run eagerly inside the block when `reason` is given (the modules are changed while it lasts)."""
        if reason:
            self._eager_reasons.append(reason)
        try:
            yield
        finally:
            if reason:
                self._eager_reasons.remove(reason)

    @staticmethod
    def _warmed(logger: logging.Logger, message: str, report: Callable[[str], None] | None) -> None:
        """One warmed shape's line, to the log and to the caller's report."""
        logger.info(message)
        if report is not None:
            report(message)

    def _warm_up_took(self, started: float) -> float:
        """The seconds since `started` (the GPU's work finished first), added to `warmup_s`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        self.warmup_s += seconds
        return seconds


@dataclass(frozen=True)
class Buckets:
    """The shapes that are compiled: image sizes (width, height) and batch sizes counted in images."""

    sizes: frozenset[tuple[int, int]]
    batches: tuple[int, ...]  # ascending

    @classmethod
    def from_settings(cls, speed: SpeedSettings, native: tuple[int, int]) -> Buckets:
        sizes = {parse_size(s) for s in speed.sizes} or {native}
        return cls(frozenset(sizes), tuple(sorted(set(speed.batches))))

    def batch_for(self, images: int) -> int | None:
        """The smallest bucket that holds `images`, or None when the batch is larger than every bucket."""
        return next((b for b in self.batches if b >= images), None)

    def rows_for(self, rows: int) -> int | None:
        """The UNet's bucket for `rows` rows. With CFG an image is two rows (unconditional, conditional), so
        buckets count guided rows and an unguided batch is padded into the same graphs."""
        return next((2 * b for b in self.batches if 2 * b >= rows), None)

    def holds(self, width: int, height: int) -> bool:
        return (width, height) in self.sizes


def pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """`tensor` with its last row repeated until it has `rows` rows (unchanged if it has enough)."""
    missing = rows - tensor.shape[0]
    if missing <= 0:
        return tensor
    return torch.cat([tensor, tensor[-1:].expand(missing, *tensor.shape[1:])])


def configure_compiler(cache_dir: Path, speed: SpeedSettings, device: torch.device) -> None:
    """Process-wide settings for compiling: caches on disk (a restart's warm-up reads compiled kernels back),
    room for every bucket in dynamo's cache, and no automatic re-compiles for new shapes."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(cache_dir / "triton"))
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    for name, floor in (("recompile_limit", 256), ("cache_size_limit", 256)):
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), floor))
    for name in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), 4096))
    dynamo.automatic_dynamic_shapes = False  # a shape outside the buckets runs eagerly instead
    inductor.fx_graph_cache = True
    if speed.autotune and device.type == "cuda":  # the settings diffusers' speed guide uses
        inductor.conv_1x1_as_mm = True
        inductor.coordinate_descent_tuning = True
        inductor.coordinate_descent_check_all_directions = True
        inductor.epilogue_fusion = False


def prepare_modules(unet: torch.nn.Module, vae: torch.nn.Module, sdxl: bool, device: torch.device) -> None:
    """Model settings of the fast modes: channels-last memory for the convolutions, SDPA attention, tuned
    cuDNN; SDXL's VAE (which overflows in float16) in bfloat16 where the GPU has it."""
    for module in (unet, vae):
        module.to(memory_format=torch.channels_last)
        if hasattr(module, "set_default_attn_processor"):
            _use_sdpa(module)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if sdxl and next(vae.parameters()).dtype == torch.float32 and torch.cuda.is_bf16_supported():
            vae.to(torch.bfloat16)


def _use_sdpa(module: torch.nn.Module) -> None:
    """Plain attention layers use PyTorch's fused scaled-dot-product attention (diffusers' default on torch 2;
    set explicitly so an older processor left by a loader does not survive)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    for layer in module.modules():
        if isinstance(layer, Attention) and type(layer.processor) is AttnProcessor:
            layer.set_processor(AttnProcessor2_0())


def _check_compiler(name: str) -> None:
    from torch._dynamo import list_backends

    known = list_backends(exclude_tags=())
    if name not in known:
        raise ValueError(
            f"speed.compiler: {name!r} is not a torch.compile backend; use one of {', '.join(sorted(known))}"
        )


def _unet_call(unet, sample, timestep, states, added):
    return unet(sample, timestep, encoder_hidden_states=states, added_cond_kwargs=added, return_dict=False)[0]


def _cached_unet_call(unet, sample, timestep, states, added, cached):
    return unet_forward(unet, sample, timestep, states, added, cached)


def _decode_call(vae, latents):
    return vae.decode(latents, return_dict=False)[0]


class FastPath(CompiledPath):
    """One model's fast path: which shapes are compiled and warm, and the calls that use them."""

    def __init__(
        self,
        unet: torch.nn.Module,
        vae: torch.nn.Module,
        vae_scale_factor: int,
        speed: SpeedSettings,
        mode: str,
        buckets: Buckets,
        token_grid: LatentGrid | None = None,
    ) -> None:
        self.unet_module, self.vae_module = unet, vae
        self.token_grid = token_grid  # token merging's grid: the warm-up's dummy calls set it like real ones
        self.factor = vae_scale_factor
        self.speed, self.mode, self.buckets = speed, mode, buckets
        self.device = next(unet.parameters()).device
        self.compiling = mode == "max"
        if self.compiling:
            _check_compiler(speed.compiler)
        self._unet_fn = self._compile(_unet_call) if self.compiling else None
        # Step caching's two graphs (whole UNet keeping its features; outer blocks only) are one function
        # that dynamo specialises on `cached` being None.
        self._cached_fn = self._compile(_cached_unet_call) if self.compiling else None
        self._decode_fn = self._compile(_decode_call) if self.compiling else None
        self._warm: set[tuple] = set()  # shapes compiled and (on CUDA) recorded as graphs
        self._failed: set[tuple] = set()  # shapes whose compile failed: eager from then on
        self._eager_reasons: list[str] = []
        self.calls: Counter[str] = Counter()  # "unet compiled", "unet eager", "decode compiled", …
        self.warmup_s = 0.0

    @property
    def cuda_graphs(self) -> bool:
        return self.compiling and self.device.type == "cuda" and self.speed.cuda_graphs

    def _compile(self, fn: Callable) -> Callable:
        kwargs: dict[str, object] = {"backend": self.speed.compiler, "fullgraph": True}
        kwargs["dynamic"] = None if self.speed.dynamic_batch else False
        if self.speed.compiler == "inductor":
            if self.cuda_graphs:
                kwargs["mode"] = "max-autotune" if self.speed.autotune else "reduce-overhead"
            elif self.speed.autotune:
                kwargs["mode"] = "max-autotune-no-cudagraphs"
        return torch.compile(fn, **kwargs)

    # ----- when to stay eager: CompiledPath.eager_while ---------------------------------------------------------

    def _bucket_size(self, tensor: torch.Tensor) -> tuple[int, int] | None:
        """The image size (width, height) of latents whose size is compiled, or None to run eagerly."""
        if not self.compiling or self._eager_reasons:
            return None
        height, width = (side * self.factor for side in tensor.shape[-2:])
        return (width, height) if self.buckets.holds(width, height) else None

    def _unet_key(self, kind: str, sample: torch.Tensor, states: torch.Tensor) -> tuple | None:
        """The compiled shape a UNet call fits, or None to run it eagerly."""
        size, rows = self._bucket_size(sample), self.buckets.rows_for(sample.shape[0])
        return None if size is None or rows is None else (kind, *size, rows, states.shape[1])

    def _decode_key(self, latents: torch.Tensor) -> tuple | None:
        size, batch = self._bucket_size(latents), self.buckets.batch_for(latents.shape[0])
        return None if size is None or batch is None else ("decode", *size, batch)

    # ----- the calls ---------------------------------------------------------------------------------------
    def unet(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        states: torch.Tensor,
        added: dict[str, torch.Tensor] | None = None,
        cache: StepCache | None = None,
    ) -> torch.Tensor:
        """The UNet's prediction for `sample` (float32, a fresh tensor), compiled where the shape is warm;
        with a step cache, the whole UNet or only its outer blocks as the cache says."""
        if cache is not None:
            return self._cached_unet(sample, timestep, states, added, cache)
        key = self._unet_key("unet", sample, states)
        if key is None or key not in self._warm:
            self.calls["unet eager"] += 1
            with torch.no_grad():
                out = _unet_call(self.unet_module, self._layout(sample), timestep, states, added)
            return out.float()
        self.calls["unet compiled"] += 1
        return self._run_unet(key[3], sample, timestep, states, added)

    def _cached_unet(self, sample, timestep, states, added, cache: StepCache) -> torch.Tensor:
        cached = None if cache.full_step() else cache.features
        kind = "unet full" if cached is None else "unet shallow"
        key = self._unet_key(kind, sample, states)
        if key is None or key not in self._warm:
            self.calls[f"{kind} eager"] += 1
            return cached_step(self.unet_module, self._layout(sample), timestep, states, added, cache).float()
        self.calls[f"{kind} compiled"] += 1
        out, features = self._run_cached(key[3], sample, timestep, states, added, cached)
        cache.keep(features)
        return out

    def _run_unet(self, rows: int, sample, timestep, states, added) -> torch.Tensor:
        """The compiled UNet call, padded to `rows` rows."""
        count = sample.shape[0]
        inputs = self._padded(rows, sample, timestep, states, added)
        assert self._unet_fn is not None
        with torch.no_grad():
            out = self._unet_fn(self.unet_module, *inputs)
        # A copy: a CUDA graph's output buffer is overwritten by its next replay.
        return out[:count].to(torch.float32, copy=True)

    def _run_cached(
        self, rows: int, sample, timestep, states, added, cached
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step caching's compiled call (whole UNet when `cached` is None), padded to `rows` rows:
        (prediction, features to keep)."""
        count = sample.shape[0]
        inputs = self._padded(rows, sample, timestep, states, added)
        if cached is not None:
            cached = self._layout(pad_rows(cached, rows))
            if self.speed.dynamic_batch:
                torch._dynamo.mark_dynamic(cached, 0)
        assert self._cached_fn is not None
        with torch.no_grad():
            out, features = self._cached_fn(self.unet_module, *inputs, cached)
        return out[:count].to(torch.float32, copy=True), features[:count].clone()

    def _padded(self, rows: int, sample, timestep, states, added) -> tuple:
        """A UNet call's inputs padded to `rows` rows and marked for the compiled code; starts a graph step."""
        sample = self._layout(pad_rows(sample, rows))
        states = pad_rows(states, rows).contiguous()
        added = {k: pad_rows(v, rows).contiguous() for k, v in added.items()} if added else None
        timestep = torch.as_tensor(timestep, device=self.device).to(torch.float32).reshape(())
        torch._dynamo.mark_dynamic(states, 1)  # prompt length (77 × chunks): one compile serves them all
        if self.speed.dynamic_batch:
            for tensor in (sample, states, *(added or {}).values()):
                torch._dynamo.mark_dynamic(tensor, 0)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return sample, timestep, states, added

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents to pixels in [-1, 1] through the VAE decoder, compiled where the shape is warm."""
        latents = latents.to(self.device, next(self.vae_module.parameters()).dtype)
        key = self._decode_key(latents)
        if key is None or key not in self._warm:
            self.calls["decode eager"] += 1
            with torch.no_grad():
                return _decode_call(self.vae_module, self._layout(latents))
        self.calls["decode compiled"] += 1
        return self._run_decode(key[3], latents)

    def _run_decode(self, batch: int, latents: torch.Tensor) -> torch.Tensor:
        count = latents.shape[0]
        padded = self._layout(pad_rows(latents, batch))
        if self.speed.dynamic_batch and batch >= 2:  # batch 1 gets a graph of its own
            torch._dynamo.mark_dynamic(padded, 0)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        assert self._decode_fn is not None
        with torch.no_grad():
            pixels = self._decode_fn(self.vae_module, padded)
        return pixels[:count].clone()

    def _layout(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.contiguous(memory_format=torch.channels_last) if self.mode != "off" else tensor

    # ----- warm-up -----------------------------------------------------------------------------------------
    def warm_up(self, report: Callable[[str], None] | None = None) -> float:
        """Compile (and record) every bucket shape with dummy inputs; returns the seconds it took.

        A shape that fails to compile is logged and left to run eagerly, and so are the other shapes of its
        function unless the failure was a lack of memory (which is the shape's own); the engine keeps working."""
        if not self.compiling:
            return 0.0
        started = time.perf_counter()
        shapes = self._bucket_shapes()
        broken: set[str] = set()  # functions whose compile failed for a reason other than memory
        for number, key in enumerate(shapes, 1):
            if key in self._warm or key in self._failed:
                continue
            if _function(key) in broken:
                self._failed.add(key)
                continue
            began = time.perf_counter()
            try:
                for _ in range(WARM_CALLS):
                    self._warm_call(key)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not stop the bot
                self._failed.add(key)
                if not _out_of_memory(exc):
                    broken.add(_function(key))
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("compiling %s failed, it runs eagerly: %s", _describe(key), first_line)
                continue
            self._warm.add(key)
            message = (
                f"warm-up {number}/{len(shapes)}: {_describe(key)} in {time.perf_counter() - began:.1f}s"
            )
            self._warmed(log, message, report)
        return self._warm_up_took(started)

    def _bucket_shapes(self) -> list[tuple]:
        shapes: list[tuple] = []
        for width, height in sorted(self.buckets.sizes):
            # With step caching on, every denoising call is one of its two kinds: plain calls are not warmed.
            kinds = ("unet full", "unet shallow") if self.speed.step_cache_interval > 1 else ("unet",)
            for batch in self.buckets.batches:
                shapes += [(k, width, height, 2 * batch, t) for k in kinds for t in TOKEN_LENGTHS]
            shapes += [("decode", width, height, batch) for batch in self.buckets.batches]
        return shapes

    def _warm_call(self, key: tuple) -> None:
        generator = torch.Generator().manual_seed(0)
        if key[0] == "decode":
            _, width, height, batch = key
            channels = int(self.vae_module.config.latent_channels)
            latents = torch.randn(
                batch, channels, height // self.factor, width // self.factor, generator=generator
            )
            self._run_decode(batch, latents.to(self.device, next(self.vae_module.parameters()).dtype))
            return
        kind, width, height, rows, tokens = key
        sample, states, added = dummy_unet_inputs(self.unet_module, rows, width, height, tokens, self.factor)
        if self.token_grid is not None:
            self.token_grid.size = (height // self.factor, width // self.factor)
        timestep = torch.tensor(500.0, device=self.device)
        if kind == "unet":
            self._run_unet(rows, sample, timestep, states, added)
            return
        cached = None
        if kind == "unet shallow":  # features of the shape the whole UNet keeps
            with torch.no_grad():
                cached = unet_forward(self.unet_module, self._layout(sample), timestep, states, added)[1]
        self._run_cached(rows, sample, timestep, states, added, cached)


def dummy_unet_inputs(unet, rows: int, width: int, height: int, tokens: int, factor: int):
    """Random inputs of a UNet call's shapes and dtypes (values do not matter to a compile)."""
    config, parameter = unet.config, next(unet.parameters())
    generator = torch.Generator().manual_seed(0)

    def noise(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(parameter.device, parameter.dtype)

    sample = noise(rows, int(config.in_channels), height // factor, width // factor)
    states = noise(rows, tokens, int(config.cross_attention_dim))
    added = None
    if config.addition_embed_type == "text_time":
        pooled = int(config.projection_class_embeddings_input_dim) - 6 * int(config.addition_time_embed_dim)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=torch.float32)
        added = {
            "text_embeds": noise(rows, pooled),
            "time_ids": time_ids.expand(rows, -1).to(parameter.device, parameter.dtype),
        }
    return sample, states, added


def _function(key: tuple) -> str:
    """Which compiled function a shape belongs to (the step cache's two kinds share one)."""
    return {"unet full": "cached", "unet shallow": "cached"}.get(key[0], key[0])


def _out_of_memory(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def _describe(key: tuple) -> str:
    if key[0] == "decode":
        return f"VAE decode {key[1]}x{key[2]} batch {key[3]}"
    what = {
        "unet": "UNet",
        "unet full": "UNet (step cache, whole)",
        "unet shallow": "UNet (step cache, outer)",
    }
    return f"{what[key[0]]} {key[1]}x{key[2]} batch {key[3] // 2} ({key[4]} tokens)"
