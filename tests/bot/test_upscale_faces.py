"""`/upscale` with A1111's Extras face restorers (`gfpgan`, `codeformer`), through the fake Discord: the faces
restored alone (no upscaler, the picture's size) and each refused by this command's option name while its
restorer or the face detector is missing. A tiny random-weight RestoreFormer stands in models/GFPGAN (the
folder's one file is what "GFPGAN" runs) with a detector whose heads always find one face."""

from __future__ import annotations

import torch

from tests.bot.conftest import ANN, CHANNEL
from tests.bot.upscaling import png, shown
from tests.tiny_faces import detect_small, one_face_detector, save_state, state_of, tiny_restoreformer


async def _refusal(salon, interaction) -> str:
    await interaction.wait_done()
    await salon.fake.wait_for(lambda: shown(interaction) and all(m.ephemeral for m in shown(interaction)), 10)
    return shown(interaction)[-1].content


async def test_upscale_restores_faces_alone_and_refuses_missing_models_by_option(salon, monkeypatch):
    folder = salon.settings.models_path / "GFPGAN"
    restorer = save_state(state_of(tiny_restoreformer()), folder / "RestoreFormerBot.safetensors")
    detector = folder / "detection_Resnet50_Final.pth"
    attachments = {"image": ("face.png", png((96, 80)), "image/png")}
    try:
        salon.engine.registry.refresh()
        no_detector = await salon.fake.slash(
            ANN, CHANNEL, "upscale", {"gfpgan": 0.5}, attachments=attachments
        )
        text = await _refusal(salon, no_detector)
        assert "**gfpgan**" in text and "detection_Resnet50_Final.pth" in text

        torch.save(one_face_detector(300.0 * detect_small(monkeypatch)), detector)
        no_codeformer = await salon.fake.slash(
            ANN, CHANNEL, "upscale", {"codeformer": 0.5}, attachments=attachments
        )
        text = await _refusal(salon, no_codeformer)
        assert "**codeformer**" in text and "models/Codeformer" in text
        nothing = await salon.fake.slash(ANN, CHANNEL, "upscale", {}, attachments=attachments)
        assert "**upscaler**" in await _refusal(salon, nothing)
        sized = await salon.fake.slash(
            ANN, CHANNEL, "upscale", {"gfpgan": 1.0, "size": "128x128"}, attachments=attachments
        )
        assert "**size**" in await _refusal(salon, sized)

        started = await salon.fake.slash(ANN, CHANNEL, "upscale", {"gfpgan": 1.0}, attachments=attachments)
        await salon.fake.wait_for(lambda: any("✅" in m.content for m in shown(started)), 60, "the restore")
        message = next(m for m in shown(started) if "✅" in m.content)
        assert "faces restored with GFPGAN" in message.content and message.attachments
        job_id = int(message.content.split("(job ")[1].split(",")[0])
        [image] = await salon.services.catalog.of_job(job_id)
        assert (image.width, image.height) == (96, 80)
    finally:
        for path in (restorer, detector):
            path.unlink(missing_ok=True)
        salon.engine.registry.refresh()
