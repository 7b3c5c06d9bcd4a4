"""Face restoration's names and text, without torch: A1111's restorer names, the queue's check of a request's
restorer, the CodeFormer weight's bounds and the Extras tab's postprocessing keys.

A1111 names its two restorers "GFPGAN" and "CodeFormer" (settings `face_restoration_model`, the infotext's
`Face restoration: CodeFormer`); each reads the files of its folder (models/GFPGAN, models/Codeformer). Salon
takes those two names (the folder's file A1111 downloads, else its first one) or a restorer file's stem
(e.g. `RestoreFormer`), and writes back the name it was given.
"""

from __future__ import annotations

from core.errors import InvalidRequest, ModelNotFound
from engine.models.registry import FACE_FOLDERS, ModelEntry, ModelKind, ModelRegistry

OPTION = "face_restorer"
INFOTEXT_KEY = "Face restoration"  # A1111 modules/processing.py create_infotext
DEFAULT_RESTORER = "CodeFormer"  # A1111's face_restoration_model default
DEFAULT_CODEFORMER_WEIGHT = 0.5  # A1111's code_former_weight default
DETECTOR_STEM = "detection_Resnet50_Final"  # facexlib's retinaface_resnet50 file
# A1111's restorer names → their folder and the files A1111 downloads into it (preferred, in this order).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "GFPGAN": (FACE_FOLDERS[0], ("GFPGANv1.4", "GFPGANv1.3")),
    "CodeFormer": (FACE_FOLDERS[1], ("codeformer-v0.1.0", "codeformer")),
}
# A1111's Extras infotext keys (scripts/postprocessing_gfpgan.py, postprocessing_codeformer.py).
GFPGAN_VISIBILITY_KEY = "GFPGAN visibility"
CODEFORMER_VISIBILITY_KEY = "CodeFormer visibility"
CODEFORMER_WEIGHT_KEY = "CodeFormer weight"


def family(name: str) -> str | None:
    """A1111's restorer name that `name` means ("gfpgan" → "GFPGAN"), or None (a file's stem)."""
    folded = name.strip().casefold()
    return next((f for f in FAMILIES if f.casefold() == folded), None)


def restorer_entry(registry: ModelRegistry, name: str) -> ModelEntry:
    """The restorer file a name means: A1111's family name picks a file of its folder, else a file's stem."""
    found = family(name)
    if found is None:
        return registry.find_fresh(ModelKind.FACE_RESTORER, name)
    registry.refresh()
    folder, preferred = FAMILIES[found]
    inside = [e for e in registry.entries(ModelKind.FACE_RESTORER) if e.path.parent.name == folder]
    if not inside:
        raise ModelNotFound(
            OPTION,
            f"{found} needs a restorer file in models/{folder} (e.g. {preferred[0]}.pth); none is there",
        )
    by_stem = {e.name.casefold(): e for e in inside}
    return next((by_stem[p.casefold()] for p in preferred if p.casefold() in by_stem), inside[0])


def detector_entry(registry: ModelRegistry) -> ModelEntry:
    """The face detector file (the folders rescanned once if it is not known), or ModelNotFound saying where
    to put it."""
    for attempt in range(2):
        for entry in registry.entries(ModelKind.FACE_DETECTOR):
            if entry.name.casefold() == DETECTOR_STEM.casefold():
                return entry
        if attempt == 0:
            registry.refresh()
    raise ModelNotFound(
        OPTION,
        f"face restoration needs the face detector {DETECTOR_STEM}.pth (facexlib's RetinaFace-ResNet50) in "
        f"models/{FACE_FOLDERS[0]} or models/{FACE_FOLDERS[1]}; it is not there",
    )


def check_restoration(registry: ModelRegistry, name: str, weight: float) -> str:
    """The queue's check: the restorer and the detector installed, the weight in 0..1. Returns the name as
    it will be written (A1111's family name as typed in its own case, else the file's stem)."""
    check_fraction("code_former_weight", weight)
    entry = restorer_entry(registry, name)
    detector_entry(registry)
    return family(name) or entry.name


def check_fraction(option: str, value: float) -> float:
    """A visibility or a CodeFormer weight: a number from 0 to 1."""
    if not 0 <= value <= 1:
        raise InvalidRequest(option, f"{value:g} is outside 0..1")
    return value


def postprocess_keys(gfpgan: float, codeformer: float, weight: float) -> dict[str, str]:
    """A1111's Extras keys for the face restorers that ran (visibility > 0), rounded to 3 places as A1111
    writes them (a Python float: 0.5 → "0.5", 1 → "1.0")."""
    keys: dict[str, str] = {}
    if gfpgan > 0:
        keys[GFPGAN_VISIBILITY_KEY] = str(round(float(gfpgan), 3))
    if codeformer > 0:
        keys[CODEFORMER_VISIBILITY_KEY] = str(round(float(codeformer), 3))
        keys[CODEFORMER_WEIGHT_KEY] = str(round(float(weight), 3))
    return keys
