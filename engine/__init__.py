"""Salon's engine: the only room that imports torch and diffusers (lazily, so metadata commands stay fast)."""
