# syntax=docker/dockerfile:1
# aex: the API (default command) and the worker (`aex worker`) in one image.
#   docker build -t aex:cpu .                                # CPU build of torch (default)
#   docker build -t aex:cuda --build-arg TORCH_VARIANT=cuda . # PyPI's CUDA build of torch
# TORCH_VARIANT: cpu (download.pytorch.org/whl/cpu), cuda (PyPI's default, CUDA wheels),
# or a PyTorch index name such as cu128 (download.pytorch.org/whl/cu128).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/aex
ENV PATH=/opt/aex/bin:$PATH
# torch first, in its own layer: it is by far the largest and changes least.
RUN case "$TORCH_VARIANT" in \
        cuda) index="" ;; \
        *) index="--index-url https://download.pytorch.org/whl/$TORCH_VARIANT" ;; \
    esac \
    && pip install $index torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aex ./aex
COPY models ./models
COPY service ./service
COPY worker ./worker
# The project as a wheel (with the bundled default model, models/default/*, as package
# data), installed with its dependencies; torch above already satisfies its pins.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install /wheels/aex-*.whl \
    && python -c "import importlib.resources as r; d = r.files('aex.models') / 'default'; \
assert d.is_dir() and any(d.iterdir()), 'the default model (models/default/) is missing'" \
    && aex --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="aex" \
      org.opencontainers.image.description="Adversarial explanations of image-classifier decisions, served over HTTP" \
      aex.torch-variant="${TORCH_VARIANT}"
RUN groupadd --system --gid 10001 aex \
    && useradd --system --uid 10001 --gid aex --home-dir /home/aex --create-home aex \
    && mkdir -p /var/lib/aex/models \
    && chown -R aex:aex /var/lib/aex
COPY --from=build /opt/aex /opt/aex
ENV PATH=/opt/aex/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AEX_MODEL_DIR=/var/lib/aex/models
USER aex
WORKDIR /home/aex
VOLUME ["/var/lib/aex/models"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# The API; the worker runs the same image with the command `aex worker` (docker-compose.yml).
CMD ["uvicorn", "--factory", "aex.service.app:create_app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
