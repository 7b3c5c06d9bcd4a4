"""The local-folder blob store (jobs/blobs.py) and result files across hosts (jobs/results.py `ResultFiles`)
over it: two data folders stand for two hosts sharing one store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jobs.blobs import BlobTooLarge, FolderBlobs, checked_key, key_suffixes
from jobs.results import ResultFiles


def run(coroutine):
    return asyncio.run(coroutine)


def test_folder_blobs_round_trip_replace_and_delete(tmp_path):
    blobs = FolderBlobs(tmp_path / "blobs")
    assert run(blobs.get("outputs/a/b.png")) is None and not run(blobs.has("outputs/a/b.png"))
    run(blobs.put("outputs/a/b.png", b"first"))
    run(blobs.put("outputs/a/b.png", b"second"))
    assert run(blobs.get("outputs/a/b.png")) == b"second" and run(blobs.has("outputs/a/b.png"))
    assert run(blobs.delete("outputs/a/b.png")) and not run(blobs.delete("outputs/a/b.png"))
    assert run(blobs.get("outputs/a/b.png")) is None
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []  # no temp file left


def test_folder_blobs_refuse_a_blob_over_the_cap_naming_the_setting(tmp_path):
    blobs = FolderBlobs(tmp_path / "blobs", max_bytes=10)
    run(blobs.put("k/ok", b"x" * 10))
    with pytest.raises(BlobTooLarge, match=r"blob_max_mb"):
        run(blobs.put("k/big", b"x" * 11))
    assert not run(blobs.has("k/big"))


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../b", "../a", "a//b", "./a", "a\\b"])
def test_keys_that_would_leave_the_folder_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="not a blob key"):
        checked_key(key)
    with pytest.raises(ValueError):
        run(FolderBlobs(tmp_path).put(key, b"x"))


def test_key_suffixes_longest_first():
    assert key_suffixes("/srv/a/outputs/x/d/f.png") == [
        "srv/a/outputs/x/d/f.png",
        "a/outputs/x/d/f.png",
        "outputs/x/d/f.png",
        "x/d/f.png",
        "d/f.png",
    ]


def hosts(tmp_path: Path) -> tuple[ResultFiles, ResultFiles, Path]:
    blobs = FolderBlobs(tmp_path / "shared")
    worker = ResultFiles(tmp_path / "A", tmp_path / "A" / "outputs", blobs)
    reader = ResultFiles(tmp_path / "B", tmp_path / "B" / "outputs", blobs)
    made = tmp_path / "A" / "outputs" / "txt2img-images" / "2024-05-01" / "00007-0-42.png"
    made.parent.mkdir(parents=True)
    made.write_bytes(b"\x89PNG result bytes")
    return worker, reader, made


def test_a_result_made_on_one_host_is_fetched_into_the_other_hosts_data_folder(tmp_path):
    worker, reader, made = hosts(tmp_path)
    assert worker.key_of(made) == "outputs/txt2img-images/2024-05-01/00007-0-42.png"
    assert run(worker.publish([str(made), str(tmp_path / "elsewhere.safetensors")])) == 1  # outputs only
    assert run(worker.local(made)) == made  # the worker's own file, as it is
    data = made.read_bytes()
    made.unlink()  # host A's folder, as the other host sees it: not there

    # The reader gets the path as the worker recorded it (another host's data folder) ...
    local = run(reader.local(str(made)))
    assert local == (tmp_path / "B" / "outputs/txt2img-images/2024-05-01/00007-0-42.png").resolve()
    assert local.read_bytes() == data
    # ... or as its own catalog names it (the same path relative to its own data folder).
    assert run(reader.local(local)) == local
    local.unlink()
    assert run(reader.local(str(local))) == local and local.is_file()


def test_the_cached_copy_is_used_without_asking_the_store(tmp_path):
    worker, reader, made = hosts(tmp_path)
    run(worker.publish([str(made)]))
    made.unlink()
    first = run(reader.local(str(made)))
    run(worker.blobs.delete(worker.key_of(made)))  # gone from the store: the reader's copy still serves
    assert run(reader.local(str(made))) == first


def test_a_result_nobody_has_stays_the_missing_path_and_sqlite_changes_nothing(tmp_path):
    _, reader, made = hosts(tmp_path)
    missing = str(tmp_path / "A" / "outputs" / "txt2img-images" / "2024-05-01" / "00008-0-1.png")
    assert run(reader.local(missing)) == Path(missing)  # not published: the caller sees a missing file
    plain = ResultFiles(tmp_path / "A", tmp_path / "A" / "outputs")  # no blob store (SQLite)
    assert run(plain.publish([str(made)])) == 0
    assert run(plain.local("/nowhere/x.png")) == Path("/nowhere/x.png")


def test_a_result_over_the_cap_stays_on_its_host(tmp_path, caplog):
    worker, reader, made = hosts(tmp_path)
    worker.blobs.max_bytes = 4
    assert run(worker.publish([str(made)])) == 0
    assert "stays on this host only" in caplog.text
    made.unlink()  # as seen from the other host: not there
    assert run(reader.local(str(made))) == made and not (tmp_path / "B" / "outputs").exists()
