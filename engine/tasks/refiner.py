"""A1111's refiner: a second checkpoint that finishes the denoising of a request's last pass.

The base model denoises until the first model call whose timestep t has (999 − t) / 1000 ≥ "switch at"
(A1111's `apply_refiner`, switching by noise level), then the refiner takes over the same sampler's loop
with its own conditioning: an SDXL refiner encodes the prompts with its one text encoder (OpenCLIP G) and
ends its time ids in an aesthetic score (engine.tasks.guidance). With the hires fix the refiner finishes the
hires pass only (A1111's default "Hires fix: which pass to enable refiner for": second pass).

A1111 swaps in any checkpoint; Salon takes one of the base model's family (SD 1.x after SD 1.x, SDXL or
an SDXL refiner after SDXL), whose latents are the base model's, and refuses the others by name.

As in A1111, where the refiner is the loaded model after the switch: the prompt's LoRAs are applied to the
refiner too, each one whose weights fit it (one that does not fit is skipped there with a note, as A1111
skips a network's layers that do not fit and comments on it); its prompt is encoded with the embeddings
that fit its text encoder; and the images are decoded with the refiner's VAE (the request's VAE file, if
any, applies to it as to the base). A1111 writes `Refiner: NAME [hash], Refiner switch at: 0.8` only when
the switch happened: a refiner switching at 1.0 changes nothing, not even the infotext.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from core.errors import InvalidRequest
from engine.models.loading import LoadedModel
from engine.prompts.lora import FusedLoras, LoraSet, LoraUse
from engine.requests import GenerationRequest
from engine.tasks.sampling import Handover, Prepared

log = logging.getLogger(__name__)


def _family(model: LoadedModel) -> str:
    if model.aesthetic_score:
        return "an SDXL refiner"
    return "an SDXL checkpoint" if model.sdxl else "an SD 1.x checkpoint"


def check_refiner(base: LoadedModel, refiner: LoadedModel, p: GenerationRequest) -> None:
    """Refuse a refiner that cannot continue the base model's latents, or a request it cannot finish."""
    if refiner.sdxl != base.sdxl:
        raise InvalidRequest(
            "refiner",
            f"{refiner.name} is {_family(refiner)} and {base.name} is {_family(base)}: "
            "a refiner must be of the base model's family (SD 1.x after SD 1.x, SDXL after SDXL)",
        )
    if refiner.inpainting != base.inpainting:
        raise InvalidRequest(
            "refiner",
            f"{refiner.name} and {base.name} differ in taking an inpainting mask: use a refiner of the same kind",
        )
    if p.controlnet:
        raise InvalidRequest("refiner", "a refiner cannot finish a request with ControlNet units")


def attach_refiner(
    prep: Prepared, refiner: LoadedModel, refined: Callable[[Prepared, LoadedModel], Prepared]
) -> Prepared:
    """`prep` with `refiner` finishing its last pass: the hires pass when there is one, else this one.
    `refined(pass, refiner)` is that pass's Prepared on the refiner (its conditioning encoded by it)."""
    p = prep.params

    def handing_over(stage: Prepared) -> Prepared:
        handover = Handover(refined(stage, refiner), p.refiner_switch_at)
        return dataclasses.replace(stage, refiner=handover)

    if p.hires is None:
        return handing_over(prep)
    return dataclasses.replace(prep, hires=handing_over(prep.hires or prep))


def with_refiner(
    preps: list[Prepared],
    refiner: LoadedModel | None,
    conditioning_of: Callable[[LoadedModel, GenerationRequest], object],
    plan_of: Callable[[LoadedModel, GenerationRequest], object],
) -> tuple[list[Prepared], list[str]]:
    """Each request's Prepared with the refiner finishing its last pass (unchanged when the refiner is the
    base model itself, which A1111 does not switch to), and notes on the prompts' embeddings it cannot use."""
    if refiner is None:
        return preps, []
    check_refiner(preps[0].model, refiner, preps[0].params)

    def refined(stage: Prepared, model: LoadedModel) -> Prepared:
        return refiner_stage(stage, model, conditioning_of(model, stage.params), plan_of(model, stage.params))

    refined_preps = [attach_refiner(prep, refiner, refined) for prep in preps]
    return refined_preps, _embedding_notes(refined_preps, refiner)


def _embedding_notes(preps: list[Prepared], refiner: LoadedModel) -> list[str]:
    """A note for each embedding a base pass used that the refiner's text encoder cannot (read as words there)."""
    notes = []
    for prep in preps:
        stage = _refined_stage(prep)
        assert stage.refiner is not None
        on_refiner = {e.name for e in stage.refiner.prep.conditioning.embeddings_used}
        for embedding in stage.conditioning.embeddings_used:
            note = f"embedding {embedding.name} does not fit the refiner {refiner.name}: not used there"
            if embedding.name not in on_refiner and note not in notes:
                notes.append(note)
    return notes


def refiner_loras(loras: LoraSet | FusedLoras, uses: list[LoraUse], refiner: LoadedModel) -> list[str]:
    """Activate on the refiner each of the prompt's LoRAs whose weights fit it (A1111 applies the prompt's
    networks to the refiner too); the others are skipped there, with a note each."""
    fitting: list[LoraUse] = []
    notes = []
    for use in (u for u in uses if u.weight != 0):
        try:
            loras.activate([*fitting, use])
        except InvalidRequest as exc:  # its weights do not fit the refiner's layers
            log.info("refiner %s: LoRA skipped: %s", refiner.name, exc)
            notes.append(f"LoRA {use.entry.name} does not fit the refiner {refiner.name}: skipped there")
        else:
            fitting.append(use)
    loras.activate(fitting)
    return notes


def decoding_model(prep: Prepared) -> LoadedModel:
    """The model whose VAE decodes `prep`'s images: the refiner once it took over (A1111 decodes with the
    loaded model, the refiner after the switch), else the base model."""
    stage = _refined_stage(prep)
    handover = stage.refiner
    return handover.prep.model if handover is not None and handover.switched else prep.model


def refiner_stage(prep: Prepared, refiner: LoadedModel, conditioning, plan) -> Prepared:
    """The Prepared a refiner denoises with: the pass's sampler and parameters, the refiner's model and
    conditioning, none of the base model's extras (ControlNet, a further pass, a further refiner)."""
    return dataclasses.replace(
        prep, model=refiner, conditioning=conditioning, plan=plan, controlnet=None, hires=None, refiner=None
    )


def _refined_stage(prep: Prepared) -> Prepared:
    """The pass of `prep` a refiner finishes (the hires pass when it has the handover)."""
    return prep.hires if prep.hires is not None and prep.hires.refiner is not None else prep


def refiner_modules(prep: Prepared) -> list:
    """The refiner's UNet and VAE where `prep` hands over to one (made batch-invariant with the base's)."""
    stage = _refined_stage(prep)
    return [] if stage.refiner is None else [stage.refiner.prep.model.unet, stage.refiner.prep.model.vae]


def refiner_infotext(prep: Prepared) -> dict[str, str | None]:
    """A1111's `Refiner` (its short title, `name [hash]`) and `Refiner switch at`, once the refiner took over."""
    stage = _refined_stage(prep)
    handover = stage.refiner
    if handover is None or not handover.switched:
        return {}
    model = handover.prep.model
    return {"Refiner": f"{model.name} [{model.hash}]", "Refiner switch at": str(handover.switch_at)}
