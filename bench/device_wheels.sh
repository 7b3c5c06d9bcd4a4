#!/usr/bin/env bash
# Wheels that bench/engine_gpu.py needs on a bare GPU machine that has torch but not Salon's other packages
# (Python 3.12, x86-64). Run here, in the repository root; the versions are the ones installed in .venv.
#
#   bash bench/device_wheels.sh          # → .whl/ (ignored by git through .git/info/exclude)
#
# Then, on the GPU machine, with .whl carried along:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3 bench/engine_gpu.py --budget 420
set -euo pipefail

python=${PYTHON:-.venv/bin/python}
# Not huggingface_hub: the machine's own (1.33 when last seen) satisfies diffusers and transformers, while
# the 2.x here would need httpx2, which it lacks. Its package list: /work/.library/device/KINDS.md.
packages=(diffusers transformers tokenizers regex safetensors peft accelerate importlib_metadata
          pydantic pydantic_core pydantic-settings python-dotenv annotated-types typing-inspection)

grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p "${WHEELS:-.whl}"
for package in "${packages[@]}"; do
    pinned=$("$python" -m pip show "$package" 2>/dev/null | awk '/^Version:/ {print $2}')
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d "${WHEELS:-.whl}" "$package${pinned:+==$pinned}"  # unpinned when not installed here
done
du -sh "${WHEELS:-.whl}"
