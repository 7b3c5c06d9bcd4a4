"""A1111's training endpoints as Salon's sliced training jobs of the caller."""

from __future__ import annotations

import asyncio
import base64
import io
import random

import requests

from tools.demo_model.shapes import Scene, ShapeSpec, render


def _images() -> list[dict[str, str]]:
    rng = random.Random(0)
    scene = Scene((ShapeSpec("star", "green", "center", "large"),), "white")
    files = []
    for i in range(2):
        data = io.BytesIO()
        render(scene, rng).save(data, format="PNG")
        files.append(
            {"name": f"{i:05d}-a green star.png", "data": base64.b64encode(data.getvalue()).decode()}
        )
    return files


def post(api, path: str, body) -> requests.Response:
    return requests.post(f"{api.url}/sdapi/v1/{path}", json=body, timeout=120)


async def test_create_then_train_an_embedding_as_a_job_of_the_caller(api, settings, engine):
    created = await asyncio.to_thread(
        post, api, "create/embedding", {"name": "qvxapi", "num_vectors_per_token": 2}
    )
    assert created.json() == {"info": "create embedding filename: qvxapi.pt"}
    body = {"embedding_name": "qvxapi", "learn_rate": "5e-3", "batch_size": 2, "steps": 3, "images": _images(),
            "training_width": 64, "training_height": 64, "log_directory": "textual_inversion"}  # fmt: skip
    path = settings.embeddings_path / "qvxapi.pt"
    try:
        trained = await asyncio.to_thread(post, api, "train/embedding", body)
        assert trained.json() == {"info": "train embedding complete: filename: qvxapi.pt error: None"}
        assert path.is_file()
        (job,) = await api.service.queue.store.recent(1)
        assert (job.kind.value, job.owner) == ("train", "api:local")
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".salon.json").unlink(missing_ok=True)
        engine.registry.refresh()  # the session's engine loads every embedding it knows into each prompt


async def test_training_takes_no_server_paths(api):
    await asyncio.to_thread(post, api, "create/hypernetwork", {"name": "hnapi"})
    refused = await asyncio.to_thread(
        post, api, "train/hypernetwork", {"hypernetwork_name": "hnapi", "data_root": "/etc"}
    )
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "data_root"]
    missing = await asyncio.to_thread(
        post, api, "train/embedding", {"embedding_name": "never", "images": _images()}
    )
    assert missing.status_code == 422 and "create the embedding 'never' first" in missing.text


async def test_create_then_train_a_hypernetwork(api, settings):
    shape = {
        "name": "hnapi2",
        "layer_structure": [1, 1.5, 1],
        "activation_func": "relu",
        "add_layer_norm": True,
    }
    assert (await asyncio.to_thread(post, api, "create/hypernetwork", shape)).ok
    body = {"hypernetwork_name": "hnapi2", "learn_rate": "1e-4", "steps": 2, "images": _images(),
            "training_width": 64, "training_height": 64}  # fmt: skip
    path = settings.hypernetworks_dir / "hnapi2.pt"
    try:
        trained = await asyncio.to_thread(post, api, "train/hypernetwork", body)
        assert trained.json() == {"info": "train hypernetwork complete: filename: hnapi2.pt error: None"}
        assert path.is_file()
        (job,) = await api.service.queue.store.recent(1)
        assert job.request["layer_structure"] == [1, 1.5, 1] and job.request["activation"] == "relu"
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".salon.json").unlink(missing_ok=True)
