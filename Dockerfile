# syntax=docker/dockerfile:1
# aex: two images from one file, each with only what its role uses.
#   docker build --target api -t aex-api .                        # the HTTP API: no torch
#   docker build --target worker -t aex-worker:cpu .              # a worker, CPU build of torch
#   docker build --target worker --build-arg TORCH_VARIANT=cuda -t aex-worker:cuda .
# TORCH_VARIANT (worker only): cpu (download.pytorch.org/whl/cpu), cuda (PyPI's default,
# CUDA wheels), or a PyTorch index name such as cu128 (download.pytorch.org/whl/cu128).
# Every package is pinned by requirements.lock (pip-compile; README: Development).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY aex ./aex
COPY models ./models
COPY service ./service
COPY worker ./worker
# The project as a wheel, with the bundled default model (models/default/*) as package data.
RUN pip wheel --no-deps --wheel-dir /wheels .
RUN python -m zipfile -l /wheels/aex-*.whl | grep -q 'aex/models/default/.*[.]safetensors' \
    || { echo 'the default model (models/default/) is missing from the wheel'; exit 1; }

FROM ${PYTHON_IMAGE} AS api-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/aex
ENV PATH=/opt/aex/bin:$PATH
COPY --from=wheel /src/requirements.lock /wheels/ /wheels/
RUN pip install -c /wheels/requirements.lock "$(ls /wheels/aex-*.whl)[api]" \
    && cd / && python -c "import aex.service.app, sys; sys.exit('torch' in sys.modules)" \
    && ! python -c "import torch" 2>/dev/null

FROM ${PYTHON_IMAGE} AS worker-build
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/aex
ENV PATH=/opt/aex/bin:$PATH
COPY --from=wheel /src/requirements.lock /wheels/ /wheels/
# torch first, in its own layer: it is by far the largest and changes least.
RUN case "$TORCH_VARIANT" in \
        cuda) index="" ;; \
        *) index="--index-url https://download.pytorch.org/whl/$TORCH_VARIANT" ;; \
    esac \
    && pip install $index -c /wheels/requirements.lock torch torchvision
RUN pip install -c /wheels/requirements.lock "$(ls /wheels/aex-*.whl)[worker]" \
    && cd / && python -c "import aex.worker.jobs, sys; sys.exit('fastapi' in sys.modules)" \
    && aex --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 aex \
    && useradd --system --uid 10001 --gid aex --home-dir /home/aex --create-home aex \
    && mkdir -p /var/lib/aex/models \
    && chown -R aex:aex /var/lib/aex
ENV PATH=/opt/aex/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AEX_MODEL_DIR=/var/lib/aex/models
WORKDIR /home/aex
VOLUME ["/var/lib/aex/models"]

FROM runtime AS worker
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="aex-worker" \
      org.opencontainers.image.description="aex worker: runs explanation and attack jobs from Redis" \
      aex.torch-variant="${TORCH_VARIANT}"
COPY --from=worker-build /opt/aex /opt/aex
USER aex
CMD ["aex", "worker"]

FROM runtime AS api
LABEL org.opencontainers.image.title="aex-api" \
      org.opencontainers.image.description="aex HTTP API: adversarial explanations of image-classifier decisions"
COPY --from=api-build /opt/aex /opt/aex
USER aex
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "--factory", "aex.service.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
