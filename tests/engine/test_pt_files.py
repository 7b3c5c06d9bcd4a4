"""Embeddings and hypernetworks Salon writes as `.pt` pass AUTOMATIC1111's safe-unpickling check.

A1111 loads every `.pt` through `modules/safe.py` (on unless started with --disable-safe-unpickle): a zip
archive whose record names do not all match its allow-list is refused ("The file may be malicious"), and the
pickle may name only a fixed list of globals. Pinned from:

- AUTOMATIC1111/stable-diffusion-webui `modules/safe.py` at 05933840f0676dd1a90a7e2ad3f2a0672624b2cd (the
  same list at 2d2edc110fb46fcf519804f57024f9c300188f9b): `allowed_zip_names_re` = A1111_V1 and the globals
  `RestrictedUnpickler.find_class` returns (A1111_GLOBALS, the torch/collections part).
- A later variant of that file (A1111 issue #14261, "Update safe.py to handle extra pytorch 2.x metadata")
  also allows `byteorder` and `.data/serialization_id` (A1111_V2). Neither allows `.format_version` or
  `.storage_alignment`, which torch >= 2.6 writes.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from types import SimpleNamespace

import pytest
import torch

from engine.models.pt_files import write_a1111_pt
from engine.prompts.embeddings import read_embedding_vectors
from engine.prompts.hypernetwork import new_hypernetwork
from engine.prompts.hypernetwork_files import read_hypernetwork, save_hypernetwork
from engine.training.embedding import save_embedding
from engine.training.loop import LoopState

A1111_V1 = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
A1111_V2 = re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$")
A1111_GLOBALS = {
    "collections OrderedDict",
    "torch._utils _rebuild_tensor_v2",
    "torch._utils _rebuild_parameter",
    "torch._utils _rebuild_device_tensor_from_numpy",
    *(
        f"torch {name}"
        for name in (
            "FloatStorage",
            "HalfStorage",
            "IntStorage",
            "LongStorage",
            "DoubleStorage",
            "ByteStorage",
            "float32",
            "BFloat16Storage",
        )
    ),  # fmt: skip
    "torch.nn.modules.container ParameterDict",
    "__builtin__ set",
}


def check_like_a1111(path) -> None:
    """Every record allowed by both allow-lists, one data.pkl, and the pickle names only allowed globals."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        refused = [n for n in names if not (A1111_V1.match(n) and A1111_V2.match(n))]
        assert not refused, f"A1111 refuses the file for {refused}"
        pickles = [n for n in names if n.endswith("/data.pkl")]
        assert len(pickles) == 1
        ops = list(pickletools.genops(archive.read(pickles[0])))
    assert not [op for op, _, _ in ops if op.name == "STACK_GLOBAL"]  # protocol 2: every global is named
    assert {arg for op, arg, _ in ops if op.name == "GLOBAL"} <= A1111_GLOBALS


def _trainer(vectors: torch.Tensor) -> SimpleNamespace:
    return SimpleNamespace(
        vectors=torch.nn.Parameter(vectors),
        options=SimpleNamespace(name="gstr"),
        model=SimpleNamespace(hash="0123456789", name="salon-demo-shapes", sdxl=False),
    )


def test_a_saved_embedding_passes_a1111s_check_and_loads_weights_only(tmp_path):
    vectors = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    path = save_embedding(_trainer(vectors), tmp_path / "gstr.pt", LoopState(step=12))
    check_like_a1111(path)
    data = torch.load(path, weights_only=True)
    # The keys A1111's textual_inversion loader reads (string_to_param, step, sd_checkpoint, …).
    assert set(data) == {
        "string_to_token",
        "string_to_param",
        "name",
        "step",
        "sd_checkpoint",
        "sd_checkpoint_name",
    }
    assert torch.equal(data["string_to_param"]["*"], vectors)
    assert (data["name"], data["step"], data["sd_checkpoint"]) == ("gstr", 12, "0123456789")
    assert torch.equal(read_embedding_vectors(path)["*"], vectors)  # Salon's own loader


def test_a_saved_hypernetwork_passes_a1111s_check_and_loads_weights_only(tmp_path):
    made = new_hypernetwork(
        "hn", [32, 320], layer_norm=True, use_dropout=True, generator=torch.Generator().manual_seed(1)
    )
    path = save_hypernetwork(tmp_path / "hn.pt", made, 40, "salon-demo-shapes", "0123456789")
    check_like_a1111(path)
    data = torch.load(path, weights_only=True, mmap=True)
    assert sorted(k for k in data if isinstance(k, int)) == [32, 320]
    loaded = read_hypernetwork(path)  # Salon's own loader
    assert loaded.options == made.options and loaded.step == 40
    for size, pair in made.layers.items():
        for mine, theirs in zip(pair, loaded.layers[size], strict=True):
            assert all(torch.equal(a, b) for a, b in zip(mine.parameters(), theirs.parameters(), strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_kept_records_hold_every_tensor(tmp_path, dtype):
    data = {"a": torch.arange(6, dtype=dtype).reshape(2, 3), "b": (torch.ones(4, dtype=dtype)[1:],)}
    write_a1111_pt(data, tmp_path / "x.pt")
    check_like_a1111(tmp_path / "x.pt")
    back = torch.load(tmp_path / "x.pt", weights_only=True)
    assert torch.equal(back["a"], data["a"]) and torch.equal(back["b"][0], data["b"][0])
    first = (tmp_path / "x.pt").read_bytes()
    write_a1111_pt(data, tmp_path / "y.pt")
    assert (tmp_path / "y.pt").read_bytes() == first  # no dates or serialization ids inside
