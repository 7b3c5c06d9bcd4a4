"""`/animate`: a Deforum-style animation from prompts and schedules, or from a Deforum settings file.

Every schedule and prompt is computed before anything is queued (a mistake names the schedule and where);
the reply shows a plot of the schedules that move, then the frames as they come, then the video.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.client import Salon
from bot.interact import place_of
from bot.submit import follow_new_job, submit_long_job
from commands.animation import animation_job, animation_settings, describe, parse_prompts, schedule_plot
from core.errors import InvalidRequest
from engine.animation.deforum_files import MAX_SETTINGS_BYTES, import_deforum

FORMATS = {"mp4": ["mp4"], "gif": ["gif"], "mp4+gif": ["mp4", "gif"], "webp": ["webp"]}


class AnimateCog(commands.Cog):
    def __init__(self, bot: Salon) -> None:
        self.bot = bot

    @app_commands.command(
        name="animate", description="A Deforum-style animation: camera moves or prompt morphing"
    )
    @app_commands.describe(
        prompts='a prompt, "0: a cat | 30: a dog", or Deforum JSON {"0": "a cat", "30": "a dog --neg blurry"}',
        settings_file="a Deforum settings.txt to animate (these options override its values)",
        mode="2D camera moves (img2img per frame) or Interpolation between prompts (3D is not built)",
        frames="number of frames",
        size="frame size",
        steps="denoising steps per frame",
        seed="start seed (-1: random)",
        zoom="zoom schedule, e.g. 0:(1.02) or 0:(1+0.002*sin(t/5))",
        angle="rotation schedule in degrees, e.g. 0:(0), 30:(10)",
        translation_x="horizontal move schedule in pixels, e.g. 0:(2)",
        translation_y="vertical move schedule in pixels",
        strength="how much of the previous frame is kept, schedule, e.g. 0:(0.65)",
        noise="noise added to each frame, schedule, e.g. 0:(0.065)",
        color_coherence="keep the first frame's colours (Deforum: LAB)",
        blend_prompts="2D: blend each prompt into the next keyframe's (default: hold it until then, as Deforum)",
        cadence="diffuse every Nth frame and blend the ones between",
        fps="frames per second of the video",
        formats="what to post",
    )
    @app_commands.choices(
        mode=[app_commands.Choice(name=m, value=m) for m in ("2D", "Interpolation")],
        size=[
            app_commands.Choice(name=s, value=s)
            for s in ("512x512", "768x512", "512x768", "384x384", "256x256")
        ],
        color_coherence=[app_commands.Choice(name=c, value=c) for c in ("LAB", "HSV", "RGB", "None")],
        formats=[app_commands.Choice(name=f, value=f) for f in FORMATS],
    )
    async def animate(
        self,
        interaction: discord.Interaction,
        prompts: str | None = None,
        settings_file: discord.Attachment | None = None,
        mode: str | None = None,
        frames: app_commands.Range[int, 1, 1000] | None = None,
        size: str | None = None,
        steps: app_commands.Range[int, 1, 150] | None = None,
        seed: int | None = None,
        zoom: str | None = None,
        angle: str | None = None,
        translation_x: str | None = None,
        translation_y: str | None = None,
        strength: str | None = None,
        noise: str | None = None,
        color_coherence: str | None = None,
        blend_prompts: bool | None = None,
        cadence: app_commands.Range[int, 1, 50] | None = None,
        fps: app_commands.Range[int, 1, 60] | None = None,
        formats: str = "mp4",
    ) -> None:
        place = await place_of(interaction)
        base, notes = None, []
        if settings_file is not None:
            if settings_file.size > MAX_SETTINGS_BYTES:
                raise InvalidRequest("settings_file", f"is larger than {MAX_SETTINGS_BYTES:,} bytes")
            imported = import_deforum(await settings_file.read())
            base, notes = imported.settings, list(imported.warnings)
            if imported.ignored:
                notes.append(f"{len(imported.ignored)} Deforum options Salon does not use were ignored")
        elif not prompts:
            raise InvalidRequest("prompts", "give prompts, or attach a Deforum settings file")
        settings = self.bot.services.settings
        default_model = place.community.default_model or settings.default_model
        width, height = (int(v) for v in size.split("x")) if size else (None, None)
        if base is None and size is None:  # the model's own size, as /imagine (issue 18 item 19)
            width, height = self.bot.services.registry.native_size(default_model)
        chosen = animation_settings(
            base,
            prompts=parse_prompts(prompts) if prompts else None,
            animation_mode=mode,
            max_frames=frames,
            width=width,
            height=height,
            steps=steps,
            seed=seed,
            zoom=zoom,
            angle=angle,
            translation_x=translation_x,
            translation_y=translation_y,
            strength_schedule=strength,
            noise_schedule=noise,
            color_coherence=color_coherence,
            blend_prompts=blend_prompts,
            diffusion_cadence=cadence,
            fps=float(fps) if fps is not None else None,
            model=None if base is not None and base.model else default_model,
        )
        if chosen.model:
            self.bot.services.registry.checkpoint(chosen.model)  # a model that is not installed fails now
        nsfw = _check_prompts(place, chosen)
        job, fixed_seed = animation_job(chosen, FORMATS[formats], limits=place.limits)
        await interaction.response.defer(thinking=True)
        record = await submit_long_job(self.bot, interaction, place, job, {"spoiler": nsfw, "nsfw": nsfw})
        plot = render.Upload("schedules.png", schedule_plot(chosen, fixed_seed))
        extra = "\n".join([describe(chosen, fixed_seed), *(f"ℹ️ {note}" for note in notes)])
        await follow_new_job(self.bot, interaction, place, record, extra, [plot])


def _check_prompts(place, settings) -> bool:
    """The server's rules (banned words, NSFW outside age-restricted channels) for every prompt of the schedule
    and the global one; True when one of them is NSFW."""
    from engine.requests import GenerationRequest

    texts = [*settings.prompts.values(), settings.positive_prompt]
    return any(place.community.check_prompt(GenerationRequest(text), place.age_restricted) for text in texts)
