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

.PHONY: setup train test test-all test-site site browser lint format clean-runs

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

# pytest-xdist workers: one per core, at most 4 (each holds torch, TensorFlow and JAX, 1-2 GB), whole test
# files per worker so that module fixtures are built once; each worker computes on its share of the cores
# (tests/conftest.py). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0))))" 2>/dev/null || echo 2)
test: setup
	$(PY) -m pytest -m "not slow" -q --durations=25 -n $(TEST_WORKERS) --dist loadfile

test-all: setup browser
	$(PY) -m pytest -q

# The zoo's front page (docs in tools/site.py): every model with its results, parity, speed and pictures,
# read from RUNS (if it exists), BENCH (`tools/bench.py all --json` output) and STORE (a store URL).
RUNS ?= runs
SITE ?= site
site: setup
	$(PY) tools/site.py $(if $(wildcard $(RUNS)),--runs $(RUNS)) $(if $(BENCH),--bench $(BENCH)) \
		$(if $(STORE),--store $(STORE)) --out $(SITE)

# Debian's chromium and chromedriver, for the site's browser test: installed from the machine's package
# manager when missing (CI runs as root on Debian), never downloaded otherwise; without apt-get the test skips.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "apt-get not found: install chromium and chromium-driver; the browser test skips without them"; exit 0; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y chromium chromium-driver || \
		{ apt-get update && apt-get install -y chromium chromium-driver; }

# The site's tests, the browser test included (it builds a site from a smoke run of every model).
test-site: setup browser
	$(PY) -m pytest tests/test_site.py -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean-runs:
	rm -rf runs
