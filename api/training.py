"""A1111's training endpoints, as Salon's sliced training jobs (jobs/training.py).

A1111 creates an empty embedding or hypernetwork file first (`create/…`), then trains it on a folder of the
server (`train/…` with `data_root`). Salon trains and writes the file in one job, and takes no paths from a
client: `create/…` records the new network's shape for its caller (kept in memory while the API runs), and
`train/…` takes the images in the body (`images`: A1111's `FileData` list, `{"name", "data"}` in base64; a
`.txt` of the same name is the caption) and submits the training job of that caller, which waits its turn
in the fair queue and yields the GPU to image jobs between slices. `train/…` answers when the job ends, with
A1111's message. Fields naming server paths (`data_root`, `log_directory`) or A1111 options Salon's
trainers do not have are refused with a 422 naming them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from api.auth import Caller
from api.schemas import CreateResponse, TrainResponse
from api.translate import Unsupported, base64_bytes
from commands.generation import LongJob
from commands.training import images_from_files, training_job
from engine.models.trained_files import check_name

EMBEDDING_DEFAULTS = {"num_vectors_per_token": 1, "init_text": "*", "overwrite_old": False}
HYPERNETWORK_DEFAULTS = {
    "enable_sizes": None,
    "overwrite_old": False,
    "layer_structure": [1, 2, 1],
    "activation_func": "linear",
    "weight_init": "Normal",
    "add_layer_norm": False,
    "use_dropout": False,
    "dropout_structure": None,
}
A1111_SIZES = {768, 320, 640, 1280, 1024}
# train/* fields Salon takes, by A1111 name → Salon's training option.
TRAIN_FIELDS = {
    "learn_rate": "learning_rate",
    "batch_size": "batch_size",
    "gradient_step": "gradient_accumulation",
    "steps": "steps",
    "clip_grad_mode": "clip_grad_mode",
    "clip_grad_value": "clip_grad_value",
    "create_image_every": "preview_every",
    "save_embedding_every": "save_every",
    "save_hypernetwork_every": "save_every",
}
# train/* fields Salon has no equivalent for, with the values that mean "not used".
TRAIN_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "data_root": (None, ""),
    "log_directory": (None, "", "textual_inversion"),
    "varsize": (None, False),
    "shuffle_tags": (None, False),
    "tag_drop_out": (None, 0, 0.0),
    "latent_sampling_method": (None, "once"),
    "use_weight": (None, False),
    "template_filename": (None, "", "style_filewords.txt", "subject_filewords.txt"),
    "save_image_with_stored_embedding": (None, True, False),
    "preview_from_txt2img": (None, False),
}


def _unknown(values: dict[str, Any], known: set[str]) -> None:
    for key in values:
        if key not in known:
            raise Unsupported(key, "not a training option Salon knows")


def _files(items: Any, limits) -> list[tuple[str, bytes]]:
    """A1111's `FileData` list as (name, bytes); names are only captions, never paths."""
    if not isinstance(items, list) or not items:
        raise Unsupported("images", "give the training images as a list of {name, data} (base64); "
                                    "Salon reads no folder of the server")  # fmt: skip
    files = []
    for item in items:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("data"), str)
        ):
            raise Unsupported("images", "each image is {name, data} with data in base64")
        files.append((Path(item["name"]).name, base64_bytes(item["data"], limits, "images")))
    return files


def add_training_routes(app: FastAPI, service) -> None:
    """The four routes, over the API's service."""
    created: dict[tuple[str, str, str], dict[str, Any]] = {}

    def create(kind: str, defaults: dict[str, Any], values: dict[str, Any], who: str) -> dict[str, str]:
        _unknown(values, {"name", *defaults})
        name = check_name(values.get("name"))
        shape = {**defaults, **{k: v for k, v in values.items() if k != "name"}}
        created[(who, kind, name)] = shape
        return {"info": f"create {kind} filename: {name}.pt"}

    @app.post("/sdapi/v1/create/embedding", response_model=CreateResponse)
    async def create_embedding(args: dict[str, Any], who: Caller):
        return create("embedding", EMBEDDING_DEFAULTS, args, who)

    @app.post("/sdapi/v1/create/hypernetwork", response_model=CreateResponse)
    async def create_hypernetwork(args: dict[str, Any], who: Caller):
        return create("hypernetwork", HYPERNETWORK_DEFAULTS, args, who)

    async def train(kind: str, name_field: str, args: dict[str, Any], who: str) -> dict[str, str]:
        _unknown(
            args, {name_field, "images", "training_width", "training_height", *TRAIN_FIELDS, *TRAIN_NEUTRAL}
        )
        for key, neutral in TRAIN_NEUTRAL.items():
            if args.get(key) not in neutral:
                raise Unsupported(key, f"{args.get(key)!r} is not supported by Salon's trainer")
        name = check_name(args.get(name_field))
        shape = created.get((who, kind, name))
        if shape is None:
            raise Unsupported(name_field, f"create the {kind} {name!r} first (POST /sdapi/v1/create/{kind})")
        width, height = args.get("training_width", 512), args.get("training_height", 512)
        if width != height:
            raise Unsupported("training_height", "Salon trains on square images: make it equal to the width")
        options: dict[str, Any] = {"resolution": width}
        for field, option in TRAIN_FIELDS.items():
            if args.get(field) is not None:
                options[option] = str(args[field]) if option == "learning_rate" else args[field]
        options.update(_shape_options(kind, shape))
        images = images_from_files(_files(args.get("images"), service.settings.limits), service.settings)
        model = service.options.of(who).get("sd_model_checkpoint") or service.settings.default_model
        entry = service.registry.checkpoint(model)
        job: LongJob = training_job(service.settings, kind, name, images, who, model=entry.name,
                                    overwrite=bool(shape.get("overwrite_old")), options=options)  # fmt: skip
        finished = await service.run_long(job, who)
        if finished.status.value != "done":
            return {"info": f"train {kind} error: {finished.error or finished.status.value}"}
        files = ", ".join(Path(path).name for path in finished.results)
        return {"info": f"train {kind} complete: filename: {files} error: None"}

    @app.post("/sdapi/v1/train/embedding", response_model=TrainResponse)
    async def train_embedding(args: dict[str, Any], who: Caller):
        return await train("embedding", "embedding_name", args, who)

    @app.post("/sdapi/v1/train/hypernetwork", response_model=TrainResponse)
    async def train_hypernetwork(args: dict[str, Any], who: Caller):
        return await train("hypernetwork", "hypernetwork_name", args, who)


def _shape_options(kind: str, shape: dict[str, Any]) -> dict[str, Any]:
    """The trainer's options for what `create/…` asked."""
    if kind == "embedding":
        return {"vectors": shape["num_vectors_per_token"], "init_text": shape["init_text"]}
    sizes = shape.get("enable_sizes")
    if sizes is not None and set(sizes) != A1111_SIZES and set(sizes) != A1111_SIZES - {1024}:
        raise Unsupported(
            "enable_sizes", "Salon's hypernetworks apply at every attention size (leave it out)"
        )
    dropout = shape.get("dropout_structure") if shape.get("use_dropout") else None
    return {
        "layer_structure": shape["layer_structure"],
        "activation": shape["activation_func"],
        "weight_init": shape["weight_init"],
        "layer_norm": bool(shape["add_layer_norm"]),
        **({"dropout": dropout} if dropout else {}),
    }
