"""Cheap live previews: latents to RGB by a fixed linear map (A1111's "Approx cheap"), no VAE decode."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Per latent channel, its contribution to R, G, B (fitted for the SD 1.x and SDXL VAEs by the community).
SD1_FACTORS = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)
SDXL_FACTORS = torch.tensor(
    [
        [0.3448, 0.4168, 0.4395],
        [-0.1953, -0.0290, 0.0250],
        [0.1074, 0.0886, -0.0163],
        [-0.3730, -0.2499, -0.2088],
    ]
)


def latents_to_preview(latents: torch.Tensor, sdxl: bool = False) -> Image.Image:
    """An RGB image (latent resolution) of the first latent of a batch; costs microseconds."""
    factors = SDXL_FACTORS if sdxl else SD1_FACTORS
    rgb = torch.einsum("chw,cr->hwr", latents[0].detach().float().cpu(), factors)
    pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")
