"""The FastAPI application: A1111's `/sdapi/v1/…` routes over an `ApiService`, and its uvicorn server.

Errors keep A1111's shapes: a body that fails validation, a field Salon cannot honour or any refused option
is a 422 `{"detail": [{"loc": ["body", field], "msg": …, "type": …}]}` (FastAPI's, which A1111 serves too);
other HTTP errors are A1111's `{"error", "detail", "body", "errors"}`. Safety before any route runs
(`guard`): a body larger than `[api] max_body_bytes` is refused from its length (413) before it is read
whole, a client that sends it too slowly is dropped (408), and no CORS headers are sent unless
`[api] cors_origins` names origins.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse

from api import listing
from api.auth import Caller, caller
from api.controlnet import add_controlnet_routes
from api.extras import add_extras_routes, model_upscalers
from api.guard import BodyGuard
from api.options import face_restorers as face_restorer_list
from api.schemas import (
    EmbeddingsResponse,
    HypernetworkItem,
    ImagesResponse,
    Img2ImgBody,
    LatentUpscalerModeItem,
    LoraItem,
    MemoryResponse,
    PNGInfoBody,
    PNGInfoResponse,
    ProgressResponse,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    ScriptsList,
    SDModelItem,
    SDVaeItem,
    Txt2ImgBody,
    UpscalerItem,
)
from api.service import ApiService
from api.translate import decode_image, decode_png_info, option_field
from core.errors import InvalidRequest


def _invalid(error: InvalidRequest) -> JSONResponse:
    field = option_field(error.option)
    return JSONResponse(
        status_code=422,
        content={
            "detail": [{"loc": ["body", *field.split(".")], "msg": error.message, "type": "value_error"}]
        },
    )


def _a1111_error(status: int, detail: Any, exc: Exception, headers: dict | None = None) -> JSONResponse:
    content = {"error": type(exc).__name__, "detail": detail, "body": "", "errors": str(exc)}
    return JSONResponse(status_code=status, content=content, headers=headers)


def create_app(service: ApiService, host: str = "127.0.0.1", port: int = 7860) -> FastAPI:
    """The application serving `service`; `host` and `port` only for /cmd-flags."""
    settings = service.settings
    app = FastAPI(title="Salon — A1111-compatible API", version="1.0")
    app.state.service = service

    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, error: InvalidRequest) -> JSONResponse:
        return _invalid(error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _a1111_error(error.status_code, error.detail, error, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> JSONResponse:
        return _a1111_error(500, "", error)

    def route(path: str, method: str = "GET", **kwargs):
        return app.api_route(f"/sdapi/v1/{path}", methods=[method], dependencies=[Depends(caller)], **kwargs)

    async def generate(body, request: Request, who: str) -> dict[str, Any]:
        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        return await service.generate(body, who, disconnected)

    @app.post("/sdapi/v1/txt2img", response_model=ImagesResponse)
    async def txt2img(body: Txt2ImgBody, request: Request, who: Caller):
        return await generate(body, request, who)

    @app.post("/sdapi/v1/img2img", response_model=ImagesResponse)
    async def img2img(body: Img2ImgBody, request: Request, who: Caller):
        return await generate(body, request, who)

    @app.get("/sdapi/v1/progress", response_model=ProgressResponse)
    async def progress(who: Caller, skip_current_image: bool = False):
        return service.board.progress(who, skip_current_image)

    @app.post("/sdapi/v1/interrupt")
    async def interrupt(who: Caller) -> dict:
        await service.interrupt(who, queued_too=True)
        return {}

    @app.post("/sdapi/v1/skip")
    async def skip(who: Caller) -> dict:
        await service.interrupt(who, queued_too=False)
        return {}

    @app.get("/sdapi/v1/options")
    async def get_options(who: Caller) -> dict[str, Any]:
        return await asyncio.to_thread(service.options.read, who)

    @app.post("/sdapi/v1/options")
    async def set_options(values: dict[str, Any], who: Caller) -> dict:
        await asyncio.to_thread(service.options.write, who, values)
        return {}

    @app.post("/sdapi/v1/png-info", response_model=PNGInfoResponse)
    async def png_info(body: PNGInfoBody, who: Caller):
        return decode_png_info(body.image, settings.limits)

    @route("sd-models", response_model=list[SDModelItem])
    async def sd_models():
        return await asyncio.to_thread(listing.sd_models, service.registry)

    @route("samplers", response_model=list[SamplerItem])
    async def samplers():
        return listing.samplers(service.queue.samplers)

    @route("schedulers", response_model=list[SchedulerItem])
    async def schedulers():
        return listing.schedulers()

    @route("upscalers", response_model=list[UpscalerItem])
    async def upscalers():  # Lanczos and Nearest, then the model upscalers (api/extras.py)
        return listing.upscalers() + await asyncio.to_thread(model_upscalers, service.registry)

    @route("latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    async def latent_upscale_modes():
        return listing.latent_upscale_modes()

    @route("loras", response_model=list[LoraItem])
    async def loras():
        return await asyncio.to_thread(listing.loras, service.registry)

    @route("hypernetworks", response_model=list[HypernetworkItem])
    async def hypernetworks():
        return listing.hypernetworks(service.registry)

    @route("embeddings", response_model=EmbeddingsResponse)
    async def embeddings():
        return await asyncio.to_thread(listing.embeddings, service.registry)

    @route("sd-vae", response_model=list[SDVaeItem])
    async def sd_vae():
        return listing.sd_vaes(service.registry)

    @route("prompt-styles", response_model=list[PromptStyleItem])
    async def prompt_styles():
        return listing.prompt_styles(settings)

    @route("cmd-flags")
    async def cmd_flags() -> dict[str, Any]:
        return listing.cmd_flags(settings, host, port, bool(service.credentials))

    @route("memory", response_model=MemoryResponse)
    async def memory():
        return listing.memory()

    @route("scripts", response_model=ScriptsList)
    async def scripts():
        return {"txt2img": [], "img2img": []}

    @route("script-info")
    async def script_info() -> list[dict[str, Any]]:
        return []

    @route("face-restorers")
    async def face_restorers() -> list[dict[str, Any]]:
        return face_restorer_list()

    for path in ("refresh-checkpoints", "refresh-loras", "refresh-vae"):

        @route(path, "POST", name=path)
        async def refresh() -> None:
            await asyncio.to_thread(service.registry.refresh)

    from api.training import add_training_routes

    add_training_routes(app, service)
    add_extras_routes(app, service)
    add_controlnet_routes(app, service, decode_image)
    return app


class Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the role that starts it owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def start(service: ApiService, host: str, port: int) -> tuple[Server, asyncio.Task]:
    """Serve the API on host:port until `stop`; returns once it listens."""
    settings = service.settings.api
    app = BodyGuard(create_app(service, host, port), settings.max_body_bytes, settings.read_timeout_s)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app = CORSMiddleware(
            app, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", timeout_keep_alive=5, access_log=False
    )
    server = Server(config)
    await service.start()
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await service.close()
            task.result()  # the reason it could not listen (the port is taken…)
            raise OSError(f"the API could not listen on {host}:{port}")
        await asyncio.sleep(0.02)
    return server, task


async def stop(service: ApiService, server: Server, task: asyncio.Task) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await service.close()
