"""The settings schema. Read once by the composition root (CLI, bot) and passed down; nothing reads it at import.

Sources, highest priority first: explicit keyword arguments, environment (`SALON_…`, nested with `__`, e.g.
`SALON_LIMITS__MAX_STEPS=80`; `DISCORD_TOKEN` for the token), the TOML file (`--config`, `SALON_CONFIG` or
`./salon.toml`), then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.errors import InvalidSettings

CONFIG_ENV = "SALON_CONFIG"
DEFAULT_CONFIG_FILE = Path("salon.toml")


class Limits(BaseModel):
    """What one request may ask for. Per-guild settings may lower these, never raise them."""

    max_width: int = Field(2048, ge=64)
    max_height: int = Field(2048, ge=64)
    max_pixels: int = Field(2048 * 2048, ge=64 * 64, description="width × height of one output image")
    max_steps: int = Field(150, ge=1)
    max_cfg_scale: float = Field(30.0, gt=0)
    max_batch_size: int = Field(8, ge=1)
    max_batch_count: int = Field(4, ge=1)
    max_prompt_chars: int = Field(4000, ge=1)
    max_hires_scale: float = Field(4.0, ge=1)
    max_plot_cells: int = Field(
        100, ge=1, description="cells of one X/Y/Z plot, prompt matrix or prompt list"
    )
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_input_pixels: int = Field(4096 * 4096, ge=64 * 64, description="pixels of an uploaded input image")


class QueueSettings(BaseModel):
    """The job queue: fairness limits, batching and how the worker reports progress."""

    max_pending_per_user: int = Field(8, ge=1, description="queued + running jobs one user may have")
    max_queued: int = Field(200, ge=1, description="queued jobs in all; more are refused")
    max_batch_images: int = Field(8, ge=1, description="images denoised together by dynamic batching")
    preview_every_steps: int = Field(5, ge=1, description="a live preview at most every N steps")
    poll_interval_s: float = Field(
        0.5, gt=0, description="how often an idle worker looks for jobs of other processes"
    )
    max_attempts: int = Field(
        2,
        ge=1,
        description="a job that crashes the worker more than this many times at the same denoising step while "
        "running alone fails, as does one that crashes it three times this many times at any points; a batch "
        "that crashes is run again job by job",
    )
    slice_s: float = Field(
        30.0,
        gt=0,
        description="a long job (training, animation) yields the GPU after this long if others wait",
    )


class ModelSettings(BaseModel):
    """The model folders (checkpoints, LoRAs, VAEs, hypernetworks, embeddings)."""

    allow_links_outside: bool = Field(
        False,
        description="use symbolic links in the model folders that lead outside them (off: such links are "
        "listed as refused by `salon models`; links between the model folders are always fine)",
    )


class CatalogSettings(BaseModel):
    """The image catalog."""

    text_index: Literal["whoosh", "sqlite"] = Field(
        "whoosh",
        description="word search engine: the Whoosh index, or SQLite's FTS5 (faster on very large catalogs); "
        "after switching to whoosh, run `salon catalog rebuild-index`",
    )


class DiscordSettings(BaseModel):
    """The Discord bot: where commands are registered and how replies are paced (SPEC §10 limits)."""

    dev_guilds: list[int] = Field(
        default_factory=list,
        description="register commands in these guilds only (instant, for development); empty = globally",
    )
    sync_commands: bool = Field(
        True, description="register commands when they changed since the last start (never on every start)"
    )
    progress_interval_s: float = Field(
        1.5, ge=0.05, description="at least this long between two edits of one progress message"
    )
    interaction_token_s: float = Field(
        15 * 60, gt=0, description="lifetime of an interaction token; later updates go to a new message"
    )
    token_margin_s: float = Field(60, ge=0, description="switch to a new message this long before expiry")
    attachment_limit_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="upload limit when Discord does not say it"
    )
    browse_page_size: int = Field(
        9, ge=1, le=25, description="images on one /browse page (a select holds 25)"
    )
    shutdown_grace_s: float = Field(8.0, gt=0, description="how long a stop waits for the running step")
    reconcile_messages: int = Field(
        50, ge=0, description="at start, read the reactions of this many newest result messages"
    )
    api_base: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="a Discord REST proxy to send API calls through (default: Discord itself)",
    )
    gateway_url: str | None = Field(
        None, pattern=r"^wss?://[^\s]+$", description="the gateway to connect to (default: Discord's)"
    )
    shards: Literal["auto"] | int = Field(
        "auto",
        description='gateway shards: "auto" (as many as Discord recommends) or a number (Discord requires '
        "one shard per 2,500 guilds)",
    )
    shard_ids: list[int] | None = Field(
        None,
        description="run only these shards here (0 to shards-1; the others in other bot processes, which "
        "then share one [database] url); default: every shard",
    )

    @field_validator("shards", mode="before")
    @classmethod
    def _read_shards(cls, value: object) -> object:
        """ "auto", or a positive whole number (also as text, from the environment)."""
        text = value.strip().lower() if isinstance(value, str) else value
        if text == "auto":
            return "auto"
        if isinstance(text, str) and text.isdigit():
            text = int(text)
        if isinstance(text, bool) or not isinstance(text, int) or text < 1:
            raise ValueError(f'discord.shards: {value!r}: give "auto" or a positive number of shards')
        return text

    @model_validator(mode="after")
    def _check_shards(self) -> DiscordSettings:
        if self.shard_ids is not None:
            if self.shards == "auto":
                raise ValueError("discord.shard_ids: set discord.shards to the total number of shards too")
            wrong = sorted({i for i in self.shard_ids if not 0 <= i < self.shards})
            if not self.shard_ids or wrong:
                raise ValueError(
                    f"discord.shard_ids: {wrong or '[]'}: give shard numbers from 0 to {self.shards - 1}"
                )
            self.shard_ids = sorted(set(self.shard_ids))
        return self

    @property
    def shard_count(self) -> int | None:
        """The number of shards for discord.py, None to ask Discord (`shards = "auto"`)."""
        return None if self.shards == "auto" else self.shards


class ScheduleSettings(BaseModel):
    """Upkeep the bot runs on its own (cron lines in UTC, as in crontab: minute hour day month weekday)."""

    purge_after_days: float = Field(30, gt=0, description="deleted images leave the recycle bin after this")
    purge_cron: str = Field("30 4 * * *", description="when the recycle bin is emptied of old images")
    optimize_cron: str = Field("0 5 * * sun", description="when the text index is optimized")
    check_cron: str = Field("0 4 * * *", description="when the catalog's integrity check (with repair) runs")
    digest_size: int = Field(5, ge=1, le=10, description="images in a daily or weekly digest")


class ExtensionSettings(BaseModel):
    """Installed extensions (entry points `salon.extensions`): which are off, which post-processing runs."""

    disabled: list[str] = Field(default_factory=list, description="extensions installed but not loaded")
    postprocess: list[str] = Field(
        default_factory=list, description="post-processing steps applied to every finished image, in order"
    )


class WebSettings(BaseModel):
    """The read-only web gallery (served by the bot process when enabled, or alone by `salon web`)."""

    enabled: bool = Field(False, description="serve the web gallery from the bot process")
    host: str = Field(
        "127.0.0.1", description="address to listen on (put a TLS proxy in front for the internet)"
    )
    port: int = Field(8765, ge=1, le=65535)
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="how people reach it, for the links /gallery web gives",
    )
    page_size: int = Field(24, ge=1, le=100, description="thumbnails per page")
    thumbnail_size: int = Field(256, ge=64, le=1024, description="longest side of a thumbnail in pixels")


class ApiSettings(BaseModel):
    """The A1111-compatible HTTP API (`salon api`, or served by the bot process when enabled)."""

    enabled: bool = Field(False, description="serve the HTTP API from the bot process (`salon run`)")
    host: str = Field("127.0.0.1", description="address to listen on; any other than loopback needs auth")
    port: int = Field(7860, ge=1, le=65535)
    auth: SecretStr | None = Field(
        None, description='HTTP Basic credentials "user:password[,user2:password2]" (A1111\'s --api-auth)'
    )
    guild: str = Field("api", min_length=1, description="the catalog's guild for images made through the API")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the API from a browser; empty: no CORS"
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="largest request body, refused before it is decoded"
    )
    read_timeout_s: float = Field(
        30.0, gt=0, description="a client that sends its request more slowly than this is disconnected"
    )


class DatabaseSettings(BaseModel):
    """Where the shared state lives: absent, the SQLite files of the data folder; a PostgreSQL URL, the job
    queue lives there and any number of workers (`salon worker`) share it (jobs/pg_store.py)."""

    url: str | None = Field(
        None,
        pattern=r"^postgres(ql)?://[^\s]*$",
        description="postgresql://user@host:port/db for the job queue; unset: SQLite files in data_dir",
    )
    lease_s: float = Field(
        30.0, ge=1, le=3600, description="a claimed job goes back in line when its worker is silent this long"
    )
    blob_max_mb: int = Field(
        64,
        ge=1,
        le=1024,
        description="the largest result file shared through the database (jobs/pg_blobs.py)",
    )
    blob_keep_days: float = Field(
        30,
        gt=0,
        description="a shared result file no catalog image refers to (purged from the recycle bin, or never "
        "catalogued) leaves the database this long after it was stored (jobs/blob_retention.py)",
    )


class SpeedSettings(BaseModel):
    """The engine's fast path (engine/speed/fast_path.py): half precision, channels-last and compiled shape buckets."""

    mode: Literal["auto", "max", "balanced", "off"] = Field(
        "auto",
        description="max: UNet and VAE decoder compiled (CUDA graphs) for the size × batch buckets, other shapes "
        "eager; balanced: the same model settings without compiling (no warm-up); off: plain eager; "
        "auto: max on CUDA, off elsewhere",
    )
    sizes: list[str] = Field(
        default_factory=list,
        description='compiled image sizes as "WxH"; empty: the native square size of each warmed model',
    )
    batches: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16],
        description="batch buckets in images; a batch is padded up to the next one, larger ones run eagerly",
    )
    dynamic_batch: bool = Field(
        True, description="one compile per size serves every batch bucket (else one compile per bucket)"
    )
    compiler: str = Field("inductor", description="torch.compile backend (eager/aot_eager only to debug)")
    cuda_graphs: bool = Field(True, description="replay compiled shapes as CUDA graphs (on CUDA)")
    autotune: bool = Field(
        False, description="inductor's slower, more thorough kernel tuning (longer warm-up, a little faster)"
    )
    warmup: bool = Field(True, description="compile the buckets when the worker starts, before any job")
    warmup_models: list[str] = Field(
        default_factory=list, description="checkpoints to warm up at start; empty: the default model"
    )
    max_models: int = Field(1, ge=1, description="loaded (and compiled) checkpoints kept in memory")
    step_cache_interval: int = Field(
        0,
        ge=0,
        le=10,
        description="step caching (DeepCache): the whole UNet runs every N steps, the steps between reuse "
        "its deep features; 0 or 1 = off (changes images slightly; written into the infotext)",
    )
    token_merging_ratio: float = Field(
        0.0,
        ge=0.0,
        le=0.75,
        description="token merging (ToMe) in the highest-resolution self-attention; 0 = off "
        "(changes images slightly; written into the infotext)",
    )

    @model_validator(mode="after")
    def _check(self) -> SpeedSettings:
        for size in self.sizes:
            parse_size(size)
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError("speed.batches: give positive batch sizes, e.g. [1, 2, 4, 8, 16]")
        self.batches = sorted(set(self.batches))
        return self


def parse_size(text: str) -> tuple[int, int]:
    """ "768x512" → (768, 512); sizes must be multiples of 8 (the VAE's factor)."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise ValueError(f'speed.sizes: "{text}" is not a size; write WIDTHxHEIGHT, e.g. "512x512"')
    w, h = int(width), int(height)
    if w < 64 or h < 64 or w % 8 or h % 8:
        raise ValueError(f'speed.sizes: "{text}": width and height must be multiples of 8, at least 64')
    return w, h


class Settings(BaseSettings):
    """Everything Salon needs to know about this machine and community, in one place."""

    model_config = SettingsConfigDict(
        env_prefix="SALON_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    data_dir: Path = Field(Path("salon-data"), description="catalog, outputs, caches and the queue live here")
    models_dir: Path | None = Field(None, description="A1111-style models/ folder; default data_dir/models")
    embeddings_dir: Path | None = Field(
        None, description="textual inversion embeddings; default data_dir/embeddings"
    )
    outputs_dir: Path | None = Field(None, description="generated images; default data_dir/outputs")
    default_model: str | None = Field(None, description="checkpoint name used when a request names none")
    default_vae: str | None = Field(
        None, description="models/VAE file used when a request names none; Automatic: the checkpoint's own"
    )
    default_refiner: str | None = Field(
        None, description="A1111's refiner: a checkpoint finishing the denoising of requests naming none"
    )
    default_refiner_switch_at: float = Field(
        0.8, ge=0, le=1, description="the fraction of the steps after which the default refiner takes over"
    )
    face_restoration_model: str = Field(
        "CodeFormer",
        description="A1111's face restorer for Restore faces: CodeFormer, GFPGAN, or a models/GFPGAN or "
        "models/Codeformer file's name",
    )
    code_former_weight: float = Field(
        0.5, ge=0, le=1, description="CodeFormer's weight, 0 = maximum effect, 1 = minimum (A1111's)"
    )
    eta_noise_seed_delta: int = Field(
        0, ge=0, le=2**32 - 1, description="A1111's ENSD: ancestral/DDIM step noise seeded by seed + this"
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    limits: Limits = Field(default_factory=Limits)
    models: ModelSettings = Field(default_factory=ModelSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    extensions: ExtensionSettings = Field(default_factory=ExtensionSettings)
    speed: SpeedSettings = Field(default_factory=SpeedSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    discord_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("discord_token", "DISCORD_TOKEN", "SALON_DISCORD_TOKEN")
    )
    config_file: Path | None = Field(None, exclude=True, description="the TOML file these settings came from")

    @model_validator(mode="after")
    def _fill_folders(self) -> Settings:
        self.models_dir = self.models_dir or self.data_dir / "models"
        self.embeddings_dir = self.embeddings_dir or self.data_dir / "embeddings"
        self.outputs_dir = self.outputs_dir or self.data_dir / "outputs"
        return self

    @property
    def checkpoints_dir(self) -> Path:
        return self.models_path / "Stable-diffusion"

    @property
    def lora_dir(self) -> Path:
        return self.models_path / "Lora"

    @property
    def controlnet_dir(self) -> Path:
        return self.models_path / "ControlNet"  # sd-webui-controlnet's folder

    @property
    def vae_dir(self) -> Path:
        return self.models_path / "VAE"

    @property
    def hypernetworks_dir(self) -> Path:
        return self.models_path / "hypernetworks"

    @property
    def models_path(self) -> Path:
        assert self.models_dir is not None  # filled by the validator
        return self.models_dir

    @property
    def embeddings_path(self) -> Path:
        assert self.embeddings_dir is not None
        return self.embeddings_dir

    @property
    def outputs_path(self) -> Path:
        assert self.outputs_dir is not None
        return self.outputs_dir

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def compile_cache_dir(self) -> Path:
        """torch.compile's on-disk cache (inductor and Triton kernels), so a restart's warm-up is fast."""
        return self.cache_dir / "torch-compile"

    @property
    def queue_db(self) -> Path:
        return self.data_dir / "queue.db"

    @property
    def styles_file(self) -> Path:
        """A1111 prompt styles (name, prompt, negative_prompt)."""
        return self.data_dir / "styles.csv"

    @property
    def community_db(self) -> Path:
        """Per-guild settings and browse sessions."""
        return self.data_dir / "community.db"

    @property
    def catalog_dir(self) -> Path:
        """The catalog's database, text index and recycle bin."""
        return self.data_dir / "catalog"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file comes from model_config["toml_file"], which load_settings sets on a subclass.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(config_file: Path | str | None = None, **overrides: object) -> Settings:
    """Read settings from `config_file` (or $SALON_CONFIG, or ./salon.toml when present) plus the environment."""
    path = Path(config_file) if config_file else None
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is None:
        with _settings_errors(None):
            return Settings(**overrides)  # type: ignore[arg-type]
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    with _settings_errors(path):
        settings = FileSettings(**overrides)  # type: ignore[arg-type]
    settings.config_file = path
    return settings


@contextmanager
def _settings_errors(path: Path | None) -> Iterator[None]:
    """A bad value in the config file or the environment, or a config file that is not TOML, as one
    `InvalidSettings` naming each setting and what is allowed (never a traceback)."""
    where = f"{path} or SALON_… variables" if path else "SALON_… variables"
    try:
        yield
    except ValidationError as exc:
        reasons = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            named = message if message.startswith(name) else f"{name}: {message}"  # a validator names it
            reasons.append(f"{named} (got {error.get('input')!r})")
        raise InvalidSettings(f"bad settings (from {where}): " + "; ".join(reasons)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSettings(f"{path} is not valid TOML: {exc}") from None
