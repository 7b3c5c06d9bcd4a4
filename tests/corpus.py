"""Where the shared corpus of real generator files lives: ../shared beside the repository (as in CI)."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "generator-metadata"
