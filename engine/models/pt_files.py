"""Legacy `.pt` files (embeddings, hypernetworks) written so that AUTOMATIC1111 loads them.

A1111 checks every `.pt` before loading it (`modules/safe.py`, on by default): a zip archive may hold only
`<archive>/data.pkl`, `<archive>/data/<n>` and `<archive>/version` (later variants of that check add
`byteorder` and `.data/serialization_id`), else it logs "The file may be malicious" and skips the file.
torch.save in torch 2.x adds `byteorder`, `.data/serialization_id`, `.format_version` and
`.storage_alignment`, so Salon writes the archive torch makes with only the records every variant allows.
torch.load (with `weights_only=True`, or mmap) reads such an archive as it reads one from torch 1.x:
little-endian data, format version 1 — true of the data Salon writes on the little-endian hosts it runs on.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import torch

# The archive records A1111 reads and every version of its allow-list accepts.
KEPT_RECORD = re.compile(r"[^/]+/(data\.pkl|data/\d+|version)")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed date: the same data gives the same bytes


def write_a1111_pt(data: object, path: Path | str) -> None:
    """Write `data` as torch.save does, keeping only the archive records A1111's safe unpickler allows."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for record in source.infolist():
            if KEPT_RECORD.fullmatch(record.filename):
                target.writestr(zipfile.ZipInfo(record.filename, _ZIP_EPOCH), source.read(record))
