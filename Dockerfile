# Salon on an NVIDIA GPU:
#   docker build -t salon .
#   docker run --gpus all -e DISCORD_TOKEN=… -v "$PWD/salon-data:/data" salon
# Checkpoints go in salon-data/models/Stable-diffusion (A1111 layout); outputs and caches land in salon-data.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    TRANSFORMERS_VERBOSITY=error \
    SALON_DATA_DIR=/data \
    SALON_DEVICE=cuda

# gcc and the Python headers: torch.compile (inductor, Triton) builds small C launchers on the GPU fast path.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/salon
ENV PATH=/opt/salon/bin:$PATH

# torch first, with its own torchvision (spandrel needs it), from the CUDA index, so the project's "torch>=2.10"
# and "torchvision" are already satisfied.
RUN pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY catalog ./catalog
COPY cli ./cli
COPY commands ./commands
COPY community ./community
COPY config ./config
COPY core ./core
COPY engine ./engine
COPY extensions ./extensions
COPY jobs ./jobs
COPY web ./web
RUN pip install .

VOLUME /data
# Optional: compile the fast path into /data/cache/torch-compile once, so later starts warm up quickly:
#   docker run --gpus all -v "$PWD/salon-data:/data" salon salon warmup
CMD ["salon", "run"]
