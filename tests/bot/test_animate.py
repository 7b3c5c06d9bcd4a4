"""`/animate` through Discord: a schedule plot at once, frames as progress, the video at the end."""

from __future__ import annotations

import json

from tests.bot.conftest import ANN, CHANNEL


async def test_animate_posts_a_plot_then_the_video(salon):
    options = {
        "prompts": "0: a red circle | 3: a green star",
        "frames": 6,
        "size": "256x256",
        "steps": 2,
        "seed": 5,
        "zoom": "0:(1), 5:(1.1)",
        "formats": "mp4+gif",
        "blend_prompts": True,
    }
    started = await salon.fake.slash(ANN, CHANNEL, "animate", options)
    await salon.fake.wait_for(lambda: started.original is not None and started.original.edits, 30)
    first = started.original.edits[0]
    assert [f.filename for f in first.files] == ["schedules.png"]
    assert "2D, 6 frames (0.4 s at 15 fps), 256×256, seed 5" in first.payload["content"]
    await salon.fake.wait_for(lambda: "frames and Deforum settings.txt" in started.original.content, 180)
    message = started.original
    names = [a.filename for a in message.attachments]
    assert names == ["animation.mp4", "animation.gif", "settings.txt"], names
    settings = json.loads(next(a for a in message.attachments if a.filename == "settings.txt").data)
    assert settings["zoom"] == "0:(1), 5:(1.1)" and settings["seed"] == 5 and settings["max_frames"] == 6
    assert settings["salon_blend_prompts"] is True  # the option is kept in the exported file
    assert any(
        f.filename == "preview.png" for edit in message.edits for f in edit.files
    )  # frames as progress


async def test_animate_refuses_bad_schedules_and_imports_deforum_files(salon):
    bad = await salon.fake.slash(ANN, CHANNEL, "animate", {"prompts": "a cat", "angle": "0:(sin(t)"})
    await bad.wait_done()
    assert bad.original.ephemeral and "angle" in bad.original.content and "position" in bad.original.content
    nothing = await salon.fake.slash(ANN, CHANNEL, "animate", {"frames": 3})
    await nothing.wait_done()
    assert "give prompts, or attach a Deforum settings file" in nothing.original.content
    deforum = {"W": 256, "H": 256, "max_frames": 3, "steps": 2, "seed": 8, "prompts": {"0": "a blue square"},
               "translation_z": "0: (1.75)", "animation_mode": "3D", "make_gif": False}  # fmt: skip
    attachments = {"settings_file": ("settings.txt", json.dumps(deforum).encode(), "text/plain")}
    refused = await salon.fake.slash(ANN, CHANNEL, "animate", {}, attachments=attachments)
    await refused.wait_done()

    def said() -> str:  # the queue refuses it after the reply was deferred: a follow-up says why
        return " ".join(m.content for m in (refused.original, *refused.followups) if m is not None)

    await salon.fake.wait_for(lambda: "3D animation needs a depth model" in said(), 60)
    assert "Deforum" in said()  # none in models/Deforum
    deforum["animation_mode"] = "2D"
    attachments = {"settings_file": ("settings.txt", json.dumps(deforum).encode(), "text/plain")}
    started = await salon.fake.slash(ANN, CHANNEL, "animate", {"formats": "gif"}, attachments=attachments)
    await salon.fake.wait_for(lambda: started.original is not None and started.original.edits, 30)
    assert "Deforum options Salon does not use were ignored" in started.original.edits[0].payload["content"]
    await salon.fake.wait_for(lambda: "frames and Deforum settings.txt" in started.original.content, 180)
    assert [a.filename for a in started.original.attachments] == ["animation.gif", "settings.txt"]
