"""Salon's built-in demo model: a tiny SD-architecture model trained on coloured shapes, shipped in the repo.

Only where its weights lie (package data); the tools that made them are in tools/demo_model/."""

from pathlib import Path

DEMO_MODEL_NAME = "salon-demo-shapes"
DEMO_MODEL_DIR = Path(__file__).resolve().parent / DEMO_MODEL_NAME
