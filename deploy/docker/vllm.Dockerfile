# vLLM on an NVIDIA GPU, serving the base model and every adapter in [adapters] dir, started as
# `make serve-vllm` starts it: scripts/serve_vllm.py reads the config and replaces itself with vLLM.
#   docker build -f deploy/docker/vllm.Dockerfile -t trading-gateway-vllm:0.1.0 .
#   docker run --gpus all -v /srv/models/base:/models/base:ro -v /srv/adapters:/srv/adapters:ro \
#       -e VLLM_API_KEY=... -p 8000:8000 trading-gateway-vllm:0.1.0
# The base model's HF folder is mounted at /models/base; nothing is downloaded at run time. docs/deploy.md.
FROM vllm/vllm-openai:v0.11.0

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    HOME=/var/cache/trading-gateway-vllm \
    XDG_CACHE_HOME=/var/cache/trading-gateway-vllm

WORKDIR /opt/trading-gateway

# scripts/serve_vllm.py needs only the project's config and adapter registry, which import nothing but
# pydantic (already in this image): the source is copied, nothing is installed.
COPY pyproject.toml ./
COPY gateway ./gateway
COPY local_models ./local_models
COPY scripts/serve_vllm.py ./scripts/serve_vllm.py
COPY deploy/docker/vllm.toml /etc/trading-gateway/vllm.toml

RUN useradd --system --uid 10002 --user-group --no-create-home --home-dir /var/cache/trading-gateway-vllm \
        --shell /usr/sbin/nologin trading-gateway-vllm \
    && mkdir -p /var/cache/trading-gateway-vllm /models /srv/adapters \
    && chown trading-gateway-vllm:trading-gateway-vllm /var/cache/trading-gateway-vllm

USER 10002:10002
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python3", "scripts/serve_vllm.py"]
CMD ["--config", "/etc/trading-gateway/vllm.toml"]
