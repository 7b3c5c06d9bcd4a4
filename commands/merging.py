"""A1111's Checkpoint Merger for any front end: its options checked against what is installed before the
`merge` long job is queued (jobs/merging.py checks them again when it accepts the job), and the new
checkpoint's name and short hash once it is written."""

from __future__ import annotations

from dataclasses import asdict

from commands.generation import LongJob
from core.errors import ModelNotFound, ModelRefused
from engine.models.merging import MergeOptions, check_options, output_path
from engine.models.registry import ModelKind, ModelRegistry
from jobs.records import JobKind

_MODEL_OPTIONS = (("primary", "A"), ("secondary", "B"), ("tertiary", "c"))  # as check_options names them


def merge_job(registry: ModelRegistry, options: MergeOptions) -> LongJob:
    """The `merge` job for `options`: the mode and multiplier checked, every model named installed (a missing
    or refused one names its option: A, B or c), the VAE found, and the new name free (never overwrites)."""
    options = check_options(options)
    for field, option in _MODEL_OPTIONS:
        name = getattr(options, field)
        if not name:
            continue
        try:
            registry.find_fresh(ModelKind.CHECKPOINT, name)
        except ModelRefused as exc:
            raise ModelRefused(option, exc.message) from None
        except ModelNotFound as exc:
            raise ModelNotFound(option, exc.message) from None
    if options.vae:
        registry.find(ModelKind.VAE, options.vae)
    output_path(registry, options.name)
    return LongJob(JobKind.MERGE, asdict(options))


def merged_checkpoint(registry: ModelRegistry, name: str) -> tuple[str, str]:
    """The new checkpoint's installed name and A1111 short hash (read from the file: it takes a while for a
    large one, so a front end runs it in a thread)."""
    registry.refresh()
    entry = registry.find(ModelKind.CHECKPOINT, name)
    return entry.name, registry.short_hash(entry)
