"""Where the corpus of real generator files lives: tests/data/corpus, inside the repository (see its README)."""

from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "data" / "corpus" / "generator-metadata"
