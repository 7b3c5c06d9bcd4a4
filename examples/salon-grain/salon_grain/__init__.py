"""An example Salon extension: seeded film grain as a post-processing step.

Install it next to Salon (`pip install examples/salon-grain`), then list `grain` in the configuration:

    [extensions]
    postprocess = ["grain"]

and every finished image gets a little monochrome grain (the same seed gives the same grain). It also adds the
sampler "DPM++ 3M", a `/grain` command that says what the step does, and a daily scheduled log line, to show
the other hooks.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

AMOUNT = 6.0  # standard deviation of the grain, in 8-bit levels

log = logging.getLogger(__name__)


def add_grain(image: Image.Image, seed: int, amount: float = AMOUNT) -> Image.Image:
    """Monochrome Gaussian grain, the same for the same seed."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0, amount, pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(np.rint(pixels + noise), 0, 255).astype(np.uint8))


def setup(api) -> None:
    api.add_postprocessor("grain", add_grain)
    # A third-order DPM++ solver under its A1111 name (in diffusers, not in Salon's built-in list).
    api.add_sampler(
        "DPM++ 3M", "DPMSolverMultistepScheduler", "Karras", algorithm_type="dpmsolver++", solver_order=3
    )
    try:
        from discord import app_commands
    except ImportError:  # Salon without the bot's dependencies: only the post-processor
        return

    @app_commands.command(name="grain", description="What the grain extension does to images")
    async def grain(interaction) -> None:
        await interaction.response.send_message(
            f"Film grain of {AMOUNT:g} levels is added to finished images when the owner enables it.",
            ephemeral=True,
        )

    api.add_command(grain)

    async def note(services) -> None:
        log.info("salon-grain is installed and enabled")

    api.add_scheduled("grain-note", "0 3 * * *", note)
