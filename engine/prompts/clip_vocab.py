"""Build CLIP's byte-level BPE tokenizer files (vocab.json, merges.txt) from OpenAI's merge list.

The merge list `bpe_simple_vocab_16e6.txt.gz` ships inside the `open_clip_torch` wheel; we read it from the
wheel (a zip) without importing open_clip, and write the Hugging Face files next to our model configs so that
loading a tokenizer never needs the network. Run once:

    pip download open-clip-torch --no-deps -d /tmp/oc
    python -m engine.prompts.clip_vocab /tmp/oc/open_clip_torch-*.whl engine/configs/clip_tokenizer
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

MERGES_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (the first line is a header).
MERGE_COUNT = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def build_vocab(merge_lines: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return CLIP's token→id map (49408 entries) and its merges, from the raw merge file lines."""
    merges = [tuple(line.split()) for line in merge_lines[1 : MERGE_COUNT + 1]]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [BOS, EOS]
    return {tok: i for i, tok in enumerate(tokens)}, merges  # type: ignore[return-value]


def read_merge_lines(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(MERGES_MEMBER)
    return gzip.decompress(raw).decode("utf-8").split("\n")


def write_tokenizer(out: Path, vocab: dict[str, int], merges: list[tuple[str, str]], pad_token: str) -> None:
    """Write the files `CLIPTokenizer.from_pretrained(out)` reads."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n"
    (out / "merges.txt").write_text(merges_text, encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("wheel", type=Path, help="path to an open_clip_torch wheel")
    parser.add_argument("out", type=Path, help="folder to write vocab.json, merges.txt and tokenizer configs")
    parser.add_argument(
        "--pad-token", default=EOS, help="SD 1.x pads with <|endoftext|>; SDXL's second uses '!'"
    )
    args = parser.parse_args(argv)
    vocab, merges = build_vocab(read_merge_lines(args.wheel))
    write_tokenizer(args.out, vocab, merges, args.pad_token)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out}")


if __name__ == "__main__":
    main()
