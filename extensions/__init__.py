"""Extensions, the seed's Extensions tab: installed Python packages that plug into Salon.

An extension is a distribution exposing an entry point in the group `salon.extensions`; the entry point names
a function `setup(api: ExtensionAPI)` that registers what the extension adds:

- `api.add_postprocessor(name, function)`: `function(image, seed) -> image`, applied to every finished image
  of an image job when the owner lists `name` in `[extensions] postprocess`; the infotext says so;
- `api.add_command(command)`: a discord.py `app_commands.Command` or `Group`, added to the bot's tree;
- `api.add_scheduled(name, cron, function)`: `async function(services)` run by the bot's scheduler (UTC cron);
- `api.add_sampler(name, scheduler_class, **arguments)`: a sampler by A1111-style name, made of a diffusers
  scheduler class and its arguments (e.g. "DPM++ 3M" = DPMSolverMultistepScheduler, solver_order=3); the
  composition root puts the enabled extensions' samplers beside the built-in ones in the process's
  `SamplerTable` (`sampler_table`), which the queue, the engine and the front ends are handed.

Extensions are installed with pip by the machine's owner, never from Discord, and can be turned off in the
configuration (`[extensions] disabled = ["name"]`). `salon extensions` and `/extensions` list them with their
URL, version (or the git branch and commit of an editable checkout), install date and state.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import Distribution, EntryPoint, entry_points
from pathlib import Path
from typing import Any

from engine.tasks.samplers import BUILTIN_SAMPLERS, SamplerSpec, SamplerTable, extension_sampler

log = logging.getLogger(__name__)
GROUP = "salon.extensions"


@dataclass
class ExtensionAPI:
    """What one extension registered."""

    name: str
    postprocessors: dict[str, Callable] = field(default_factory=dict)
    commands: list[Any] = field(default_factory=list)
    scheduled: list[tuple[str, str, Callable]] = field(default_factory=list)
    samplers: list[SamplerSpec] = field(default_factory=list)

    def add_postprocessor(self, name: str, function: Callable) -> None:
        self.postprocessors[name] = function

    def add_command(self, command: Any) -> None:
        self.commands.append(command)

    def add_scheduled(self, name: str, cron: str, function: Callable) -> None:
        self.scheduled.append((name, cron, function))

    def add_sampler(
        self, name: str, scheduler_class: str, default_schedule: str = "Automatic", **arguments
    ) -> None:
        self.samplers.append(extension_sampler(name, scheduler_class, default_schedule, arguments))


@dataclass(frozen=True)
class ExtensionInfo:
    """One installed extension as the Extensions tab lists it."""

    name: str
    distribution: str
    url: str
    version: str
    installed: str  # date
    enabled: bool
    error: str = ""  # why it did not load, if it did not
    api: ExtensionAPI | None = None


def discover(disabled: list[str] | tuple[str, ...] = ()) -> list[ExtensionInfo]:
    """Every installed extension; enabled ones are loaded and set up (a failing one is listed with its error)."""
    found = []
    samplers = BUILTIN_SAMPLERS  # an extension whose sampler clashes with an earlier one's fails to load
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        dist = point.dist
        info = dict(
            name=point.name,
            distribution=dist.metadata["Name"] if dist else "?",
            url=_url(dist),
            version=_version(dist),
            installed=_installed(dist),
            enabled=point.name not in disabled,
        )
        if not info["enabled"]:
            found.append(ExtensionInfo(**info))
            continue
        try:
            api = _load(point)
            samplers = samplers.with_samplers(api.samplers)
        except Exception as exc:  # an extension's bug must not stop Salon
            log.exception("extension %s failed to load", point.name)
            found.append(ExtensionInfo(**info, error=f"{type(exc).__name__}: {exc}"))
            continue
        found.append(ExtensionInfo(**info, api=api))
    return found


def _load(point: EntryPoint) -> ExtensionAPI:
    setup = point.load()
    api = ExtensionAPI(point.name)
    setup(api)
    return api


def postprocessors(extensions: list[ExtensionInfo], wanted: list[str]) -> list[tuple[str, Callable]]:
    """The post-processing steps the configuration asks for, in its order; unknown names are an error."""
    available = {name: fn for ext in extensions if ext.api for name, fn in ext.api.postprocessors.items()}
    missing = [name for name in wanted if name not in available]
    if missing:
        from core.errors import InvalidRequest

        raise InvalidRequest(
            "extensions.postprocess", f"no enabled extension provides {', '.join(missing)}; installed: "
            f"{', '.join(sorted(available)) or 'none'}",
        )  # fmt: skip
    return [(name, available[name]) for name in wanted]


def sampler_table(extensions: list[ExtensionInfo]) -> SamplerTable:
    """The built-in samplers and those of the enabled extensions: the process's one sampler table."""
    return BUILTIN_SAMPLERS.with_samplers(spec for ext in extensions if ext.api for spec in ext.api.samplers)


def _url(dist: Distribution | None) -> str:
    if dist is None:
        return ""
    meta = dist.metadata
    for entry in meta.get_all("Project-URL") or []:
        label, _, link = entry.partition(",")
        if label.strip().lower() in ("homepage", "source", "repository"):
            return link.strip()
    return meta.get("Home-page") or ""


def _version(dist: Distribution | None) -> str:
    if dist is None:
        return "?"
    version = dist.version
    source = _editable_source(dist)
    if source is not None and (source / ".git").exists():
        try:
            branch = subprocess.run(["git", "-C", str(source), "rev-parse", "--abbrev-ref", "HEAD"],
                                    capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
            commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
            if commit:
                return f"{version} ({branch} {commit})"
        except OSError:
            pass
    return version


def _editable_source(dist: Distribution) -> Path | None:
    direct = dist.read_text("direct_url.json")
    if not direct:
        return None
    import json

    data = json.loads(direct)
    url = data.get("url", "")
    if data.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    return None


def _installed(dist: Distribution | None) -> str:
    if dist is None:
        return ""
    location = getattr(dist, "_path", None)
    try:
        stamp = Path(location).stat().st_mtime if location else None
    except OSError:
        stamp = None
    return dt.datetime.fromtimestamp(stamp, dt.UTC).date().isoformat() if stamp else ""
