"""Deforum settings files written and read: every option that changes Deforum's frames is written as Salon made
them, files are read as Deforum's own loader reads them, and Salon → export → import gives the settings back.

Facts from sd-webui-deforum at commit 322426851408ebca2cd49492bfeb1ec86e1dc869:
- scripts/deforum_helpers/settings.py `load_args`: a key the file leaves out keeps the value Deforum's interface
  shows ("Key … doesn't exist in the custom settings data! Using default value …"); `perlin_w` and `perlin_h` are
  in `get_keys_to_exclude`, so they are never read from a file.
- deprecation_utils.py `handle_deprecated_settings`: `legacy_colormatch` missing → True; colour coherence
  "Match Frame 0 LAB/HSV/RGB" → "LAB/HSV/RGB"; `flip_2d_perspective` → `enable_perspective_flip`; boolean
  `hybrid_composite` → "None"/"Normal".
- args.py interface defaults that differ from what Salon does: noise_type "perlin" (Salon made zero-mean
  Gaussian noise), amount_schedule "0: (0.1)" (anti-blur, which Salon does not have), noise_multiplier_schedule
  "0: (1.05)" with enable_noise_multiplier_scheduling on, legacy_colormatch False.
Checked outside the repository: Deforum's `load_args` on Salon's export, with every interface value changed
first, gives back every key as written except perlin_w and perlin_h.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core.errors import InvalidRequest
from engine.animation.animate import AnimationSettings, check_settings
from engine.animation.deforum_files import export_deforum, import_deforum

# What Deforum would otherwise take from its interface and that changes frames or the video: Salon writes it.
WRITTEN = {
    "legacy_colormatch": False,
    "noise_type": "perlin",
    "perlin_octaves": 4,
    "perlin_persistence": 0.5,
    "enable_noise_multiplier_scheduling": True,
    "noise_multiplier_schedule": "0: (1.05)",
    "amount_schedule": "0: (0)",
    "enable_clipskip_scheduling": True,
    "clipskip_schedule": "0: (1)",
    "enable_ancestral_eta_scheduling": True,
    "ancestral_eta_schedule": "0: (1)",
    "enable_ddim_eta_scheduling": True,
    "ddim_eta_schedule": "0: (0)",
    "enable_perspective_flip": False,
    "enable_subseed_scheduling": False,
    "enable_sampler_scheduling": False,
    "enable_checkpoint_scheduling": False,
    "color_force_grayscale": False,
    "optical_flow_cadence": "None",
    "optical_flow_redo_generation": "None",
    "diffusion_redo": "0",
    "hybrid_composite": "None",
    "hybrid_motion": "None",
    "use_init": False,
    "use_mask": False,
    "use_mask_video": False,
    "use_noise_mask": False,
    "use_looper": False,
    "parseq_manifest": None,
    "reroll_blank_frames": "ignore",
    "motion_preview_mode": False,
    "resume_from_timestring": False,
    "tiling": False,
    "restore_faces": False,
    "seed_resize_from_w": 0,
    "seed_resize_from_h": 0,
    "cn_1_enabled": False,
    "cn_5_enabled": False,
    "frame_interpolation_engine": "None",
    "r_upscale_video": False,
    "add_soundtrack": "None",
    "salon_blend_prompts": False,
}


def test_every_option_that_changes_deforums_frames_is_written():
    exported = export_deforum(AnimationSettings(), 3)
    assert {key: exported.get(key, "<missing>") for key in WRITTEN} == WRITTEN
    assert exported["perlin_w"] == exported["perlin_h"] == 8  # for Salon; Deforum keeps its own 8
    json.dumps(exported)  # plain JSON


def test_a_file_is_read_as_deforums_loader_reads_it():
    bare = import_deforum(json.dumps({"prompts": {"0": "a cat"}}))
    assert bare.settings.legacy_colormatch is True and bare.settings.noise_type == "perlin"
    assert not bare.warnings
    old = import_deforum(
        json.dumps(
            {"color_coherence": "Match Frame 0 HSV", "legacy_colormatch": False, "flip_2d_perspective": True,
             "hybrid_composite": True, "amount_schedule": "0: (0.1)", "enable_clipskip_scheduling": True,
             "clipskip_schedule": "0: (2)", "ancestral_eta_schedule": "0: (0.5)", "perlin_w": 4.7}
        )
    )  # fmt: skip
    settings = old.settings
    assert (
        settings.color_coherence == "HSV" and settings.legacy_colormatch is False and settings.perlin_w == 4
    )
    assert settings.hybrid_composite == "Normal"  # Salon builds it (engine/animation/hybrid.py)
    assert old.warnings == (
        "Salon does not have Deforum's enable_perspective_flip True; it is ignored",
        "Salon does not have Deforum's anti-blur (unsharp mask) (amount_schedule '0: (0.1)'); it is ignored",
        "Salon does not have Deforum's CLIP skip (clipskip_schedule '0: (2)'); it is ignored",
    )  # the ancestral eta schedule is not switched on: Deforum does not use it either
    assert "ancestral_eta_schedule" in old.ignored and "amount_schedule" in old.ignored
    with pytest.raises(InvalidRequest, match="perlin_octaves: 'four' is not a number"):
        import_deforum(json.dumps({"perlin_octaves": "four"}))
    with pytest.raises(InvalidRequest, match="noise_type: 'simplex' is not one of: uniform, perlin"):
        check_settings(import_deforum(json.dumps({"noise_type": "simplex"})).settings)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"legacy_colormatch": True, "noise_type": "uniform", "blend_prompts": True},
        {
            "perlin_w": 4,
            "perlin_h": 2,
            "perlin_octaves": 2,
            "perlin_persistence": 0.7,
            "color_coherence": "HSV",
        },
        {"enable_noise_multiplier_scheduling": False, "noise_multiplier_schedule": "0: (1), 10: (1.2)"},
        {"prompts": {"0": "a `t/2` cat --neg blurry", "max_f-1": "a dog"}, "negative_prompt": "ugly"},
    ],
)
def test_salon_to_deforum_and_back_gives_the_same_animation(changes):
    settings = replace(AnimationSettings(seed=5, max_frames=30), **changes)
    check_settings(settings)
    exported = json.loads(json.dumps(export_deforum(settings)))
    imported = import_deforum(json.dumps(exported))
    assert imported.settings == settings
    assert imported.warnings == () and imported.ignored == ()


def test_a_deforum_file_imports_exports_and_imports_to_the_same_animation():
    """A file as Deforum saves it (its args.py keys and defaults; no legacy_colormatch, as files from before that
    option): import → export → import gives the same settings, and the export keeps legacy mode explicit."""
    saved = {
        "W": 512, "H": 768, "seed": 1234, "sampler": "DPM++ 2M Karras", "steps": 30, "seed_behavior": "ladder",
        "seed_iter_N": 1, "prompts": {"0": "a lighthouse `0.8+0.2*cos(t/5)` --neg fog", "48": "a lighthouse at night"},
        "animation_prompts_positive": "oil painting,", "animation_prompts_negative": "text",
        "animation_mode": "2D", "max_frames": 96, "border": "wrap", "angle": "0: (0)",
        "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))", "translation_x": "0: (0), 48: (4)", "translation_y": "0: (0)",
        "transform_center_x": "0: (0.5)", "transform_center_y": "0: (0.5)", "noise_schedule": "0: (0.065)",
        "strength_schedule": "0: (0.65)", "contrast_schedule": "0: (1.0)", "cfg_scale_schedule": "0: (7)",
        "enable_steps_scheduling": False, "steps_schedule": "0: (25)", "seed_schedule": "0:(s)",
        "color_coherence": "Match Frame 0 LAB", "diffusion_cadence": "2", "noise_type": "uniform",
        "perlin_octaves": 4, "perlin_persistence": 0.5, "enable_noise_multiplier_scheduling": True,
        "noise_multiplier_schedule": "0: (1.05)", "amount_schedule": "0: (0)", "kernel_schedule": "0: (5)",
        "fps": 24, "make_gif": False, "sd_model_name": "v1-5-pruned-emaonly.safetensors",
    }  # fmt: skip
    first = import_deforum(json.dumps(saved))
    assert first.settings.legacy_colormatch is True and first.settings.color_coherence == "LAB"
    assert first.settings.noise_type == "uniform" and first.settings.diffusion_cadence == 2
    check_settings(first.settings)
    exported = export_deforum(first.settings, 1234)
    assert exported["legacy_colormatch"] is True
    again = import_deforum(json.dumps(exported))
    assert again.settings == first.settings and again.warnings == ()
