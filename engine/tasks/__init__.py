"""Tasks and samplers: txt2img, img2img, inpaint, the denoising loop, samplers, noise, batching."""
