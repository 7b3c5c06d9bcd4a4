"""Which files in the model folders may be used at all: decided before anything hashes, lists or loads them.

A file is usable when it stays inside the model folders (a symbolic link out of them is refused unless the
owner sets `[models] allow_links_outside = true`) and its bytes are what its name says: `.safetensors`
files pass `check_safetensors` (header length, JSON header, dtypes, offsets), legacy `.pt`/`.bin` files
start like a PyTorch save (a zip archive or a pickle; they are loaded with `weights_only=True` later).
Verdicts are kept per path, size, mtime and inode, so a rescan only reads the headers of changed files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from core.errors import UnsafeModelFile
from engine.models.model_files import SAFETENSORS_SUFFIX, check_safetensors

LINK_SETTING = "[models] allow_links_outside = true"
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive, or a legacy pickle (protocol ≥ 2)


class ModelGate:
    """Refusal reasons for model files and diffusers folders (None: usable)."""

    def __init__(self, roots: Iterable[Path], *, allow_links_outside: bool = False) -> None:
        self.roots = tuple(Path(root).resolve() for root in roots)
        self.allow_links_outside = allow_links_outside
        self._verdicts: dict[Path, tuple[tuple[int, int, int], str | None]] = {}

    def file_refusal(self, path: Path) -> str | None:
        """Why the model file `path` must not be used, or None."""
        outside = self.link_refusal(path)
        if outside is not None:
            return outside
        try:
            info = path.stat()
        except OSError as exc:
            return f"cannot read it ({exc.strerror or exc})"
        key = (info.st_size, info.st_mtime_ns, info.st_ino)
        known = self._verdicts.get(path)
        if known is not None and known[0] == key:
            return known[1]
        reason = content_refusal(path)
        self._verdicts[path] = (key, reason)
        return reason

    def folder_refusal(self, folder: Path) -> str | None:
        """Why the diffusers folder `folder` must not be used: its own link, then each file inside."""
        outside = self.link_refusal(folder)
        if outside is not None:
            return outside
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or path.suffix.lower() == SAFETENSORS_SUFFIX:
                reason = self.link_refusal(path) or (
                    self.file_refusal(path) if path.suffix.lower() == SAFETENSORS_SUFFIX else None
                )
                if reason is not None:
                    return f"{path.relative_to(folder)}: {reason}"
        return None

    def link_refusal(self, path: Path) -> str | None:
        """A link (of the file or a folder on its way) that leads out of every model folder, unless allowed."""
        if self.allow_links_outside:
            return None
        target = path.resolve()
        if any(target == root or target.is_relative_to(root) for root in self.roots):
            return None
        return f"a link to {target}, outside the model folders (set {LINK_SETTING} to use it)"


def content_refusal(path: Path) -> str | None:
    """Why the bytes of `path` are not a model file of its kind (by suffix), or None; reads headers only."""
    try:
        if path.suffix.lower() == SAFETENSORS_SUFFIX:
            check_safetensors(path)
        else:
            with path.open("rb") as fh:
                head = fh.read(4)
            if not head.startswith(_TORCH_MAGIC):
                return "not a PyTorch file (neither a zip archive nor a pickle); use .safetensors"
    except UnsafeModelFile as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    return None
