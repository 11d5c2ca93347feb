# Two commands set up a fresh machine: `make run` and `make test` (both install first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

NODE := tests/node
NODE_STAMP := $(NODE)/node_modules/.installed

.PHONY: install system-packages run test lint fmt typecheck bench bench-scale soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/python -m service

# The Debian packages the suite runs as real parts (PostgreSQL, Chromium, nginx…), when missing.
system-packages:
	bash tests/system/install-packages

# The Node tools the suite runs against Latch (verifiers, client generators), from the lock file.
$(NODE_STAMP): $(NODE)/package-lock.json | system-packages
	npm ci --prefix $(NODE) --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: system-packages install $(NODE_STAMP) lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff format service tests bench
	$(BIN)/ruff check --fix service tests bench

soak: install
	LATCH_SOAK_SIGNINS=$${LATCH_SOAK_SIGNINS:-5000} LATCH_SOAK_CONCURRENCY=$${LATCH_SOAK_CONCURRENCY:-100} LATCH_SOAK_PURGE_SCALE=$${LATCH_SOAK_PURGE_SCALE:-1} $(BIN)/python -m pytest -q -m soak

bench: install
	command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(BIN)/python -m bench

bench-scale: install
	command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(BIN)/python -m bench.scale --write

clean:
	rm -rf $(NODE)/node_modules $(VENV) data .pytest_cache .mypy_cache .ruff_cache test-artifacts build *.egg-info
