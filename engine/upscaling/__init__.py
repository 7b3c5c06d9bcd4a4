"""Model upscalers (A1111's Extras tab and its hires fix upscalers): files in `models/ESRGAN`, `RealESRGAN`,
`SwinIR`, `DAT`, `HAT` loaded by spandrel from a state dict (`files.py`), run in tiles whose seams are blended
(`tiles.py`, `upscale.py`), the Extras tab's sizes, limits and infotext (`extras.py`, no torch), and a model
upscaler as the hires pass's (`hires.py`)."""
