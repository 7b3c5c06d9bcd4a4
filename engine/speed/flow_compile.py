"""The fast path of SD 3.5 and Flux (speed mode "max"): the transformer's forward compiled for warmed shapes only.

diffusers' pipelines run these models (engine.tasks.flow); the transformer is where their time goes. In "max"
its `forward` is replaced by a dispatcher: a call whose signature (every tensor argument's shape, dtype and
device, every other argument's value; in effect batch rows × latent tokens × text tokens) was warmed up goes
to a `torch.compile`d function (`dynamic=False`, the compiler settings of `configure_compiler`), every other
call runs the original forward eagerly, so a user's job never waits for a compile. A warmed call runs under
`torch.compiler.set_stance("fail_on_recompile")`: if a guard still fails (something about the module changed)
it runs eagerly and the shape is dropped, never recompiled while a job waits. Warm-up runs the model's own
pipeline with an empty prompt at each speed size (default: the family's native size) × batch bucket, so the
shapes are exactly those a job with the family's default guidance produces. Batches are not padded into
buckets here: a batch of another size runs eagerly. LoRAs (diffusers adapters that change the modules) run
eagerly while they are loaded.

CUDA graphs are not used for flow models (the compiled code runs as inductor kernels only). "balanced"
changes nothing for them: they are already loaded in bfloat16 on a GPU and diffusers' attention for these
transformers is PyTorch's SDPA.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import torch

from config import SpeedSettings
from engine.speed.fast_path import CompiledPath, _check_compiler

log = logging.getLogger(__name__)

# Pipeline steps per warmed shape: the first call compiles, the second runs it with no guard failing.
WARM_STEPS = 2


def _transformer_call(forward, kwargs):
    return forward(**kwargs)


def _inference(value):
    if isinstance(value, torch.Tensor) and not value.is_inference():
        return value.clone()
    return value


def call_key(args: tuple, kwargs: dict) -> tuple | None:
    """The signature of a transformer call that decides which compiled code fits it; None: not cacheable."""
    if args:
        return None
    parts: list[tuple] = []
    for name in sorted(kwargs):
        value = kwargs[name]
        if isinstance(value, torch.Tensor):
            parts.append((name, tuple(value.shape), value.dtype, value.device.type))
        elif value is None or isinstance(value, bool | int | float | str):
            parts.append((name, value))
        elif isinstance(value, dict) and not value:  # Flux's joint_attention_kwargs when nothing is set
            parts.append((name, "{}"))
        else:
            return None  # attention kwargs dicts, LoRA scales: eager
    return tuple(parts)


def describe(key: tuple) -> str:
    """A key in words: its batch rows, latent tokens and text tokens."""
    shapes = {part[0]: part[1] for part in key if len(part) == 4}
    hidden, text = shapes.get("hidden_states", ()), shapes.get("encoder_hidden_states", ())
    tokens = hidden[1] if len(hidden) == 3 else (hidden[2] * hidden[3] if len(hidden) == 4 else "?")
    rows = hidden[0] if hidden else "?"
    return f"{rows} rows × {tokens} latent values/tokens, {text[1] if len(text) == 3 else '?'} text tokens"


class FlowFastPath(CompiledPath):
    """A flow model's compiled transformer: which call shapes are warm, and the dispatcher that uses them."""

    def __init__(self, pipe, speed: SpeedSettings, sizes: list[tuple[int, int]], warm_prompt: dict) -> None:
        self.pipe, self.speed = pipe, speed
        self.sizes, self.warm_prompt = sizes, warm_prompt  # warm_prompt: the family's default guidance kwargs
        self.module = pipe.transformer
        self.device = next(self.module.parameters()).device
        self._forward = type(self.module).forward.__get__(self.module)  # the original, eager forward
        _check_compiler(speed.compiler)
        options: dict[str, object] = {"backend": speed.compiler, "dynamic": False, "fullgraph": True}
        if speed.compiler == "inductor" and speed.autotune:
            options["mode"] = "max-autotune-no-cudagraphs"
        self._compiled = torch.compile(_transformer_call, **options)
        self._warm: set[tuple] = set()
        self._failed: set[tuple] = set()
        self._recording = False
        self._eager_reasons: list[str] = []
        self.calls: Counter[str] = Counter()  # "transformer compiled", "transformer eager"
        self.warmup_s = 0.0
        self.module.forward = self._dispatch  # nn.Module.__call__ finds the instance attribute first

    def _dispatch(self, *args, **kwargs):
        key = None if self._eager_reasons else call_key(args, kwargs)
        if key is not None and key not in self._failed and (self._recording or key in self._warm):
            try:
                out = self._run_compiled(key, kwargs)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not fail the job
                self._failed.add(key)
                self._warm.discard(key)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("compiled transformer failed for %s, it runs eagerly: %s", describe(key), first)
            else:
                self.calls["transformer compiled"] += 1
                if self._recording:
                    self._warm.add(key)
                return out
        self.calls["transformer eager"] += 1
        return self._forward(*args, **kwargs)

    def _run_compiled(self, key: tuple, kwargs: dict):
        if torch.is_inference_mode_enabled():
            # The first step's latents come from outside inference mode, the later ones from inside it: to
            # dynamo's guards those are different tensors, so every tensor is made an inference tensor.
            kwargs = {k: _inference(v) for k, v in kwargs.items()}
        if self._recording and key not in self._warm:
            return self._compiled(self._forward, kwargs)
        with torch.compiler.set_stance("fail_on_recompile"):
            return self._compiled(self._forward, kwargs)

    def warm_up(self, report: Callable[[str], None] | None = None) -> float:
        """Compile the transformer for each size × batch bucket by running the pipeline (an empty prompt, the
        family's default guidance, the latents kept); returns the seconds it took. A failure is logged and
        its shapes run eagerly."""
        started = time.perf_counter()
        shapes = [(size, batch) for size in self.sizes for batch in sorted(set(self.speed.batches))]
        for number, ((width, height), batch) in enumerate(shapes, 1):
            began, before = time.perf_counter(), set(self._warm)
            self._recording = True
            try:
                with torch.inference_mode():
                    self.pipe(
                        prompt=[""] * batch,
                        num_inference_steps=WARM_STEPS,
                        height=height,
                        width=width,
                        output_type="latent",
                        generator=torch.Generator().manual_seed(0),
                        **self.warm_prompt,
                    )
            except Exception as exc:  # noqa: BLE001 - a failed warm-up leaves the model working eagerly
                log.warning(
                    "warming up %dx%d batch %d failed, it runs eagerly: %s", width, height, batch, exc
                )
                continue
            finally:
                self._recording = False
            new = ", ".join(describe(k) for k in self._warm - before) or "nothing compiled (see the log)"
            message = (
                f"warm-up {number}/{len(shapes)}: transformer {width}x{height} batch {batch} ({new}) "
                f"in {time.perf_counter() - began:.1f}s"
            )
            self._warmed(log, message, report)
        return self._warm_up_took(started)

    @property
    def warm_keys(self) -> frozenset[tuple]:
        return frozenset(self._warm)
