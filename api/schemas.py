"""The request and response bodies of the API, with A1111's field names and defaults.

Field names, defaults and response shapes are those of AUTOMATIC1111's `modules/api/models.py` and the
`StableDiffusionProcessing*` classes behind it (read at commit 0050a35429b824cbb0a794694358fb32ce487ac4 and
008a8e7576387bc172f9ecd0384274dd19f9036b). Every field A1111 accepts is declared here, so a real client's
body validates; fields Salon has no equivalent for are accepted only at A1111's neutral value
(api/translate.py refuses others with a 422 naming the field). Fields A1111 does not know are refused
(`extra="forbid"`), never dropped in silence.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationBody(_Body):
    """What txt2img and img2img share (A1111's `StableDiffusionProcessing`)."""

    prompt: str = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int | None = -1
    seed_resize_from_w: int | None = -1
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    distilled_cfg_scale: float | None = None  # Forge's: Flux dev's distilled guidance
    shift: float | None = None  # SD 3.5 / Flux: the schedule's shift (Salon's; Forge writes `Shift`)
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None


class Txt2ImgBody(GenerationBody):
    """`POST /sdapi/v1/txt2img` (A1111's `StableDiffusionProcessingTxt2Img`)."""

    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    hr_cfg: float | None = None  # the hires pass's CFG scale; None: the first pass's
    firstphase_width: int = 0
    firstphase_height: int = 0


class Img2ImgBody(GenerationBody):
    """`POST /sdapi/v1/img2img` (A1111's `StableDiffusionProcessingImg2Img`)."""

    init_images: list[str] | None = None
    resize_mode: int = 0
    denoising_strength: float | None = 0.75
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool | int = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False


class ImagesResponse(BaseModel):
    """txt2img's and img2img's answer (A1111's `TextToImageResponse` / `ImageToImageResponse`)."""

    images: list[str] | None = Field(
        None, description="The generated images, base64 PNG with their infotext."
    )
    parameters: dict[str, Any]
    info: str


class PNGInfoBody(_Body):
    image: str = Field(description="The base64 encoded image")


class PNGInfoResponse(BaseModel):
    info: str
    items: dict[str, Any]
    parameters: dict[str, Any]


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict[str, Any]
    current_image: str | None = None
    textinfo: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float | None = None
    need_inner_model: bool | None = None


class UpscalerItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class SDModelItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class SDVaeItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    filename: str


class HypernetworkItem(BaseModel):
    name: str
    path: str | None = None


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class PromptStyleItem(BaseModel):
    name: str
    prompt: str | None = None
    negative_prompt: str | None = None


class EmbeddingItem(BaseModel):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int
    vectors: int


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


class MemoryResponse(BaseModel):
    ram: dict[str, Any]
    cuda: dict[str, Any]


class ScriptsList(BaseModel):
    txt2img: list[str] | None = None
    img2img: list[str] | None = None


class CreateResponse(BaseModel):
    info: str


class TrainResponse(BaseModel):
    info: str
