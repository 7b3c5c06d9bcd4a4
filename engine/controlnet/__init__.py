"""ControlNet (sd-webui-controlnet's units): models from `models/ControlNet`, preprocessors, and the residuals
the denoising loop adds to the UNet. `unit_text` is plain Python (front ends import it); the rest uses torch."""
