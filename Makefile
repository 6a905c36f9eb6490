# Zoo: `make train` (the main job on embedded data) and `make test` set up .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP_VERSION := 26.3
# The stamp is keyed on the lock file: a changed lock re-syncs the venv; a broken venv is rebuilt.
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: setup train test test-all lint format clean-runs

setup: $(STAMP)

$(STAMP):
	@if ! $(PY) -c "import sys; assert sys.version_info[:2] == (3, 11)" 2>/dev/null; then \
		echo "creating $(VENV) with $(PYTHON)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

# The main job: the ResNet CNN on 5,000 real MNIST digits in both frameworks, checked to be the same
# model, each checkpoint evaluated by the other framework.
train: setup
	$(PY) tools/train.py zoo/vision/cnn --fw torch --out runs/cnn-torch --overwrite
	$(PY) tools/train.py zoo/vision/cnn --fw keras --out runs/cnn-keras --overwrite
	$(PY) tools/crosscheck.py zoo/vision/cnn
	$(PY) tools/evaluate.py runs/cnn-torch --fw keras --json > runs/cnn-torch/evaluated-in-keras.json
	$(PY) tools/evaluate.py runs/cnn-keras --fw torch --json > runs/cnn-keras/evaluated-in-torch.json
	$(PY) tools/summary.py runs/cnn-torch runs/cnn-keras

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean-runs:
	rm -rf runs
