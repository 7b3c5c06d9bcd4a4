"""The model registry: what checkpoints, LoRAs, VAEs, hypernetworks and embeddings are installed, and their
A1111 hashes.

Folders follow A1111 (`models/Stable-diffusion`, `models/Lora`, `models/VAE`, `models/hypernetworks`,
`embeddings`; upscalers in `models/ESRGAN`, `RealESRGAN`, `SwinIR`, `DAT`, `HAT`; face restorers and the face
detector in `models/GFPGAN`, `Codeformer`). Names a user types are
looked up among scanned entries only, so no user text ever becomes a path. Hashes are A1111's: checkpoints
"AutoV2" (first 10 hex of the file's sha256; upscalers and face models too), LoRAs the
additional-networks hash (sha256 of a safetensors file's tensor data, after its header; 12 hex), embeddings
and hypernetworks the file's sha256 (12 hex). They are cached by path, size and mtime in a JSON file.

Every file passes the gate (`engine/models/model_gate.py`: links out of the folders, the safetensors header) before
it is hashed or listed as usable; refused files are listed with their reason, and a prompt or option naming
one gets that reason. The default checkpoint never changes because a new file appeared (`default_checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from core.errors import ModelNotFound, ModelRefused, UnsafeModelFile
from core.files import atomic_write
from engine.models.model_gate import ModelGate
from engine.models.trained_files import OWNER_SUFFIX

log = logging.getLogger(__name__)

HASH_BLOCK_BYTES = 1024 * 1024


class ModelKind(StrEnum):
    CHECKPOINT = "checkpoint"
    LORA = "lora"
    VAE = "vae"
    HYPERNETWORK = "hypernetwork"
    EMBEDDING = "embedding"
    CONTROLNET = "controlnet"
    UPSCALER = "upscaler"  # ESRGAN, SwinIR, DAT, ... loaded by spandrel (engine/upscaling)
    FACE_RESTORER = "face restorer"  # GFPGAN, CodeFormer, RestoreFormer, loaded by spandrel (engine/faces)
    FACE_DETECTOR = "face detector"  # facexlib's detection_Resnet50_Final, beside them (engine/faces)


# Which files count, per kind. ".pt"/".bin" embeddings and hypernetworks are A1111's legacy formats, read with
# torch.load(weights_only=True); checkpoints, LoRAs and VAEs must be safetensors (or a diffusers folder).
ACCEPTED_SUFFIXES: dict[ModelKind, tuple[str, ...]] = {
    ModelKind.CHECKPOINT: (".safetensors",),
    ModelKind.LORA: (".safetensors",),
    ModelKind.VAE: (".safetensors",),
    ModelKind.HYPERNETWORK: (".pt", ".safetensors"),
    ModelKind.EMBEDDING: (".pt", ".bin", ".safetensors"),
    ModelKind.CONTROLNET: (".safetensors",),
    # A1111's upscaler files are mostly `.pth` state dicts: read with torch.load(weights_only=True) only.
    ModelKind.UPSCALER: (".safetensors", ".pth", ".pt"),
    ModelKind.FACE_RESTORER: (".safetensors", ".pth", ".pt"),
    ModelKind.FACE_DETECTOR: (".safetensors", ".pth"),
}
# A1111's upscaler folders under models/ (the first one is where `salon models` says to put them).
UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT")
# A1111's face restorer folders; facexlib keeps its helper files in them (`detection_*`: the face detector,
# `parsing_*`: the parsing model, not used), so a file's name says which kind it is (`kind_of_face_file`).
FACE_FOLDERS = ("GFPGAN", "Codeformer")
FACE_HELPER_PREFIXES = {"detection_": ModelKind.FACE_DETECTOR, "parsing_": None}
# What makes a folder one diffusers model rather than a folder of files: a pipeline's index, or (ControlNet)
# a model's own config.json.
FOLDER_MARKERS: dict[ModelKind, str] = {
    ModelKind.CHECKPOINT: "model_index.json",
    ModelKind.CONTROLNET: "config.json",
}
LEGACY_HASH_OFFSET, LEGACY_HASH_BYTES = 0x100000, 0x10000
REFUSED_SUFFIXES = (".ckpt", ".pth", ".pkl", ".pickle")
# Beside every file Salon trained (jobs/training.py writes it): who made it. Such files never become the
# default checkpoint by themselves.
TRAINED_SIDECAR_SUFFIX = OWNER_SUFFIX
DEFAULT_MODEL_FILE = (
    "default-model.json"  # in the data folder: the default chosen once, as A1111 keeps its own
)


@dataclass(frozen=True)
class ModelEntry:
    """One installed file (or diffusers folder) and where it lives."""

    kind: ModelKind
    name: str  # the file stem: what a prompt or the infotext `Model:` key uses
    path: Path
    size: int
    mtime_ns: int
    is_diffusers_folder: bool = False


@dataclass(frozen=True)
class RefusedFile:
    """A file in a model folder that Salon will not load, and why (shown by `salon models`)."""

    kind: ModelKind
    path: Path
    reason: str


def sha256_file(path: Path, skip_bytes: int = 0) -> str:
    """Hex sha256 of a file's bytes after `skip_bytes`, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(skip_bytes)
        for block in iter(lambda: f.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def addnet_sha256(path: Path) -> str:
    """The additional-networks hash A1111 shows for safetensors LoRAs: sha256 of the data after the header."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        size = os.fstat(f.fileno()).st_size
    if header_len > size - 8:  # the file changed since the gate read it
        raise UnsafeModelFile(
            path, f"not safetensors: header length {header_len} exceeds the file size {size}"
        )
    return sha256_file(path, skip_bytes=8 + header_len)


def legacy_model_hash(path: Path) -> str:
    """A1111's old model hash, which sd-webui-controlnet shows and writes: sha256 of the 64 KiB at 1 MiB, 8 hex
    (a diffusers folder: of its weights file)."""
    if path.is_dir():
        path = min(path.glob("*.safetensors"), key=lambda p: p.name)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(LEGACY_HASH_OFFSET)
        digest.update(f.read(LEGACY_HASH_BYTES))
    return digest.hexdigest()[:8]


def sha256_folder(path: Path) -> str:
    """A stable hash of a diffusers folder: its weight and config files, by relative path and content."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json")):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


class HashCache:
    """sha256 values keyed by path, size and mtime, kept in one JSON file so restarts never rehash."""

    def __init__(self, file: Path) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, object]] = self._read()

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get_or_compute(self, entry: ModelEntry, method: str) -> str:
        key = f"{method}:{entry.path.resolve()}"
        with self._lock:
            hit = self._data.get(key)
            if hit and hit.get("size") == entry.size and hit.get("mtime_ns") == entry.mtime_ns:
                return str(hit["sha256"])
        value = _HASHERS[method](entry.path)
        with self._lock:
            self._data[key] = {"size": entry.size, "mtime_ns": entry.mtime_ns, "sha256": value}
            self._write()
        return value

    def _write(self) -> None:
        atomic_write(self._file, json.dumps(self._data, indent=1, sort_keys=True))


_HASHERS = {
    "sha256": sha256_file,
    "addnet": addnet_sha256,
    "folder": sha256_folder,
    "legacy": legacy_model_hash,
}


def _folder_stat(path: Path) -> tuple[int, int]:
    files = [p.stat() for p in path.rglob("*") if p.is_file()]
    return sum(s.st_size for s in files), max((s.st_mtime_ns for s in files), default=0)


class ModelRegistry:
    """Scans the model folders on demand and resolves names to entries and hashes."""

    def __init__(
        self,
        folders: dict[ModelKind, Path],
        hash_cache: HashCache,
        builtin_checkpoints: Iterable[Path] = (),
        *,
        allow_links_outside: bool = False,
        default_file: Path | None = None,
        more_folders: dict[ModelKind, tuple[Path, ...]] | None = None,
    ) -> None:
        self.folders = folders
        self.more_folders = dict(more_folders or {})  # a kind's other folders (upscalers: A1111 has several)
        self.hashes = hash_cache
        self.builtin_checkpoints = tuple(builtin_checkpoints)
        roots = [*folders.values(), *(path for paths in self.more_folders.values() for path in paths)]
        self.gate = ModelGate(roots, allow_links_outside=allow_links_outside)
        self.default_file = default_file
        self._entries: dict[ModelKind, list[ModelEntry]] = {}
        self.refused: list[RefusedFile] = []
        self._scanning = threading.RLock()
        self.refresh()

    @classmethod
    def from_settings(cls, settings) -> ModelRegistry:  # settings: config.Settings
        folders = {
            ModelKind.CHECKPOINT: settings.checkpoints_dir,
            ModelKind.LORA: settings.lora_dir,
            ModelKind.VAE: settings.vae_dir,
            ModelKind.HYPERNETWORK: settings.hypernetworks_dir,
            ModelKind.EMBEDDING: settings.embeddings_path,
            ModelKind.CONTROLNET: settings.controlnet_dir,
            ModelKind.UPSCALER: settings.models_path / UPSCALER_FOLDERS[0],
        }
        upscalers = tuple(settings.models_path / name for name in UPSCALER_FOLDERS[1:])
        for kind in (ModelKind.FACE_RESTORER, ModelKind.FACE_DETECTOR):
            folders[kind] = settings.models_path / FACE_FOLDERS[0]
        faces = tuple(settings.models_path / name for name in FACE_FOLDERS[1:])
        from engine.demo import DEMO_MODEL_DIR

        return cls(
            folders,
            HashCache(settings.cache_dir / "hashes.json"),
            builtin_checkpoints=[DEMO_MODEL_DIR],
            allow_links_outside=settings.models.allow_links_outside,
            default_file=settings.data_dir / DEFAULT_MODEL_FILE,
            more_folders={
                ModelKind.UPSCALER: upscalers,
                ModelKind.FACE_RESTORER: faces,
                ModelKind.FACE_DETECTOR: faces,
            },
        )

    def refresh(self) -> None:
        """Rescan every folder (cheap: stat calls only, no hashing). One registry serves the event loop and
        the GPU thread: a scan runs under a lock and its result replaces the old one whole."""
        with self._scanning:
            refused: list[RefusedFile] = []
            entries = {kind: self._scan(kind, folder, refused) for kind, folder in self.folders.items()}
            for kind, folders in self.more_folders.items():
                entries[kind] = entries.get(kind, []) + [
                    e for f in folders for e in self._scan(kind, f, refused)
                ]
            entries[ModelKind.CHECKPOINT] += self.builtin_entries()
            self._entries, self.refused = entries, refused
            self._remember_default()

    def builtin_entries(self) -> list[ModelEntry]:
        """The checkpoints that ship with Salon (the demo model), after the user's own."""
        entries = []
        for path in self.builtin_checkpoints:
            if (path / "model_index.json").is_file():
                size, mtime = _folder_stat(path)
                entries.append(
                    ModelEntry(ModelKind.CHECKPOINT, path.name, path, size, mtime, is_diffusers_folder=True)
                )
        return entries

    def _scan(self, kind: ModelKind, folder: Path, refused: list[RefusedFile]) -> list[ModelEntry]:
        if not folder.is_dir():
            return []
        entries: list[ModelEntry] = []
        for path in sorted(folder.rglob("*")):
            if _hidden_or_sidecar(path, folder):
                continue
            marker = FOLDER_MARKERS.get(kind)
            if marker is not None and path.is_dir() and (path / marker).is_file():
                reason = self.gate.folder_refusal(path)
                if reason is not None:
                    refused.append(RefusedFile(kind, path, reason))
                    continue
                size, mtime = _folder_stat(path)
                entries.append(ModelEntry(kind, path.name, path, size, mtime, is_diffusers_folder=True))
            elif path.is_file() and not _inside_diffusers_folder(path, folder, marker):
                entry = self._file_entry(kind, path, refused)
                if entry is not None:
                    entries.append(entry)
        return entries

    def _file_entry(self, kind: ModelKind, path: Path, refused: list[RefusedFile]) -> ModelEntry | None:
        suffix = path.suffix.lower()
        if kind in (ModelKind.FACE_RESTORER, ModelKind.FACE_DETECTOR) and kind_of_face_file(path) is not kind:
            return None
        if suffix in ACCEPTED_SUFFIXES[kind]:
            reason = self.gate.file_refusal(path)  # before any hash: the header decides, not the name
            if reason is not None:
                refused.append(RefusedFile(kind, path, reason))
                return None
            stat = path.stat()
            return ModelEntry(kind, path.stem, path, stat.st_size, stat.st_mtime_ns)
        if suffix in REFUSED_SUFFIXES:
            refused.append(RefusedFile(kind, path, f"{suffix} files are pickles; convert to .safetensors"))
        return None

    def entries(self, kind: ModelKind) -> list[ModelEntry]:
        return list(self._entries.get(kind, []))

    def names(self, kind: ModelKind) -> list[str]:
        return [e.name for e in self.entries(kind)]

    def find(self, kind: ModelKind, name: str) -> ModelEntry:
        """The entry called `name` (file stem, A1111 title "name [hash]", or a hash prefix of ≥ 8 hex)."""
        wanted = name.strip()
        if wanted.endswith("]") and " [" in wanted:
            wanted = wanted[: wanted.rindex(" [")]
        for entry in self.entries(kind):
            if entry.name == wanted:
                return entry
        folded = wanted.casefold()
        for entry in self.entries(kind):
            if entry.name.casefold() == folded:
                return entry
        refused = self._refused_named(kind, folded)
        if refused is not None:
            label = kind.value if kind is not ModelKind.CHECKPOINT else "model"
            raise ModelRefused(
                label, f"{wanted!r} cannot be used: {refused.path} is refused ({refused.reason})"
            )
        if len(wanted) >= 8 and all(c in "0123456789abcdef" for c in folded):
            for entry in self.entries(kind):
                if self.sha256(entry).startswith(folded):
                    return entry
        raise ModelNotFound(
            kind.value if kind is not ModelKind.CHECKPOINT else "model", self._missing(kind, name)
        )

    def find_fresh(self, kind: ModelKind, name: str) -> ModelEntry:
        """`find`, rescanning the folders once if the name is not known (a file added since the last scan)."""
        try:
            return self.find(kind, name)
        except ModelNotFound:
            self.refresh()
            return self.find(kind, name)

    def _refused_named(self, kind: ModelKind, folded: str) -> RefusedFile | None:
        """The refused file a name (casefolded) means, if any: a file stem or a diffusers folder's name."""
        for refused in self.refused:
            stem = refused.path.name if refused.path.is_dir() else refused.path.stem
            if refused.kind is kind and stem.casefold() == folded:
                return refused
        return None

    def checkpoint(self, name: str | None) -> ModelEntry:
        """The checkpoint called `name`; with None, the default one (see `default_checkpoint`)."""
        if name is not None:
            return self.find_fresh(ModelKind.CHECKPOINT, name)
        self.refresh()
        return self.default_checkpoint()

    def flow_kind(self, name: str | None):
        """The SD 3.5 / Flux family of a checkpoint (None: another family), from its folder or header."""
        from engine.models.flow_files import entry_kind

        return entry_kind(self.checkpoint(name))

    def native_size(self, name: str | None) -> tuple[int, int]:
        """The default image size for a checkpoint (None: the default one): the square it was trained at.
        Every command without a size uses this (imagine, animate; the CLI and the bot)."""
        side = native_resolution(self.checkpoint(name))
        return side, side

    def default_checkpoint(self) -> ModelEntry:
        """The checkpoint used when neither the request nor the settings name one. A new file never changes it:

        1. the default remembered in `default-model.json` (like A1111's `sd_model_checkpoint`), if installed;
        2. else the one checkpoint put there by hand (files Salon trained do not count), which is remembered;
        3. else the built-in demo model (with no checkpoint, or several and none remembered).
        """
        builtin = self.builtin_entries()
        installed = [e for e in self.entries(ModelKind.CHECKPOINT) if e not in builtin]
        remembered = self._remembered_default()
        for entry in (*installed, *builtin):
            if entry.name == remembered:
                return entry
        by_hand = [e for e in installed if not trained_by_salon(e.path)]
        if len(by_hand) == 1:
            return by_hand[0]
        if builtin:
            if by_hand:
                log.info("several checkpoints installed and no default_model set: using %s", builtin[0].name)
            return builtin[0]
        raise ModelNotFound("model", "no model given and no default_model set; choose one with --model")

    def _remembered_default(self) -> str | None:
        """The checkpoint name kept in the default file, or None (no file, or one that cannot be read)."""
        if self.default_file is None:
            return None
        try:
            value = json.loads(self.default_file.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def _remember_default(self) -> None:
        """Keep the default chosen from a single hand-installed checkpoint, so a file added later (by hand or
        by training) cannot change it; the demo model is never remembered (installing a first real
        checkpoint is how one leaves it)."""
        if self.default_file is None:
            return
        try:
            chosen = self.default_checkpoint()
        except ModelNotFound:  # nothing installed and no built-in model: nothing to remember
            return
        if chosen.path in self.builtin_checkpoints or chosen.name == self._remembered_default():
            return
        try:
            atomic_write(self.default_file, json.dumps({"model": chosen.name, "chosen_at": time.time()}))
        except OSError as exc:  # a read-only data folder: the rule above still holds for this process
            log.warning("cannot remember the default model in %s: %s", self.default_file, exc)

    def _missing(self, kind: ModelKind, name: str) -> str:
        known = self.names(kind)
        folder = self.folders.get(kind, "the model folders")
        if not known:
            return f"no {kind.value} named {name!r}: none installed in {folder}"
        shown = ", ".join(known[:20]) + (", …" if len(known) > 20 else "")
        return f"no {kind.value} named {name!r}; installed: {shown}"

    def sha256(self, entry: ModelEntry) -> str:
        method = "folder" if entry.is_diffusers_folder else "sha256"
        if entry.kind is ModelKind.LORA and entry.path.suffix.lower() == ".safetensors":
            method = "addnet"
        return self.hashes.get_or_compute(entry, method)

    def short_hash(self, entry: ModelEntry) -> str:
        """The hash A1111 writes: 10 hex for checkpoints, VAEs and upscalers (AutoV2, as A1111's hash cache keeps
        any file's), 12 for LoRAs, embeddings, hypernetworks; ControlNets: A1111's old 8-hex model hash, as
        sd-webui-controlnet writes it."""
        if entry.kind is ModelKind.CONTROLNET:
            return self.hashes.get_or_compute(entry, "legacy")
        length = 10 if entry.kind in AUTOV2_KINDS else 12
        return self.sha256(entry)[:length]


AUTOV2_KINDS = (
    ModelKind.CHECKPOINT,
    ModelKind.VAE,
    ModelKind.UPSCALER,
    ModelKind.FACE_RESTORER,
    ModelKind.FACE_DETECTOR,
)


def kind_of_face_file(path: Path) -> ModelKind | None:
    """What a file in models/GFPGAN or models/Codeformer is: a face detector (`detection_…`), nothing Salon
    uses (`parsing_…`) or a face restorer."""
    for prefix, kind in FACE_HELPER_PREFIXES.items():
        if path.name.startswith(prefix):
            return kind
    return ModelKind.FACE_RESTORER


def native_resolution(entry: ModelEntry) -> int:
    """The side length a checkpoint was trained at, read from its configs or header (SD 1.x 512, SDXL 1024,
    SD 2.x 768 for v-prediction, 512 for epsilon: `engine.models.sd2_family`)."""
    folder = entry.path if entry.is_diffusers_folder else entry.path.with_name(entry.path.stem + ".config")
    from engine.models.flow_files import FLOW_SIDE, flow_kind

    if flow_kind(entry.path, entry.is_diffusers_folder) is not None:  # SD 3.5 and Flux (flow_files)
        return FLOW_SIDE
    if (folder / "unet" / "config.json").is_file():
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    from engine.models.model_files import CheckpointKind, check_safetensors, detect_checkpoint_kind

    kind = detect_checkpoint_kind(check_safetensors(entry.path))
    if kind in (CheckpointKind.SD2, CheckpointKind.SD2_INPAINT):
        from engine.models.sd2_family import known_prediction, sd2_side

        inpainting = kind is CheckpointKind.SD2_INPAINT
        return sd2_side(None if inpainting else known_prediction(entry.path), inpainting)
    return 1024 if kind in (CheckpointKind.SDXL, CheckpointKind.SDXL_INPAINT) else 512


def trained_by_salon(path: Path) -> bool:
    """Whether Salon's training wrote this file or folder (its owner sidecar lies beside it)."""
    return path.with_name(path.name + TRAINED_SIDECAR_SUFFIX).is_file()


def _inside_diffusers_folder(path: Path, root: Path, marker: str | None = "model_index.json") -> bool:
    if marker is None:
        return False
    return any((parent / marker).is_file() for parent in _parents_below(path, root))


def _parents_below(path: Path, root: Path) -> Iterable[Path]:
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return
        yield parent


def _hidden_or_sidecar(path: Path, root: Path) -> bool:
    """Not a model of its own: hidden files and folders (a save in progress) and what lies in a single-file
    checkpoint's `<stem>.config` sidecar folder (its diffusers configs)."""
    parts = path.relative_to(root).parts
    if any(part.startswith(".") for part in parts):
        return True
    for depth, part in enumerate(parts):
        if part.endswith(".config"):
            beside = root.joinpath(*parts[:depth], part.removesuffix(".config") + ".safetensors")
            if beside.is_file():
                return True
    return False
