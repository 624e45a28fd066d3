# Quick start: `make demo` (run the pipeline on the bundled sample) and `make test`.
# Both install what they need first, idempotently, into .venv/ at the repository root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.voxhear-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The shared offline model store beside the checkout (as in CI) when it exists.
ifneq ($(wildcard ../shared/models/MODELS.tsv),)
export VOXHEAR_MODEL_DIR ?= $(abspath ../shared/models)
endif

.PHONY: install demo test test-fast lint lock clean-runs

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v ffmpeg >/dev/null 2>&1 || { echo "ffmpeg missing: installing it with apt-get"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq ffmpeg >/dev/null; }
	@# Headless chromium for the QC dashboard's browser test (tests/qc).
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "chromium missing: installing chromium and chromium-driver with apt-get"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@test -x $(PY) || python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@# The package with its test extras (pytest, pytest-timeout, ruff, mypy, ...), held to the lock's
	@# versions: a no-op when the lock is complete, and a tool missing from it is still installed.
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[test]"
	$(PY) -m pip check
	@touch $@

demo: install
	$(VENV)/bin/voxhear run --run-dir runs/demo --keep-work

test: install
	HF_HUB_OFFLINE=1 VOXHEAR_OFFLINE=1 $(PY) -m pytest -q

test-fast: install
	HF_HUB_OFFLINE=1 VOXHEAR_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

# ruff and mypy on the engine, the stages, the manifests and the passes (as CI runs them).
lint: install
	bash .ci/lint

# Regenerate the pinned set after changing dependencies in pyproject.toml.
lock:
	rm -rf .lockenv && python3.11 -m venv .lockenv && .lockenv/bin/pip install -q -e ".[test]"
	(echo "# Exact, tested dependency set (pip freeze of a fresh install; regenerate with 'make lock')."; \
	 .lockenv/bin/pip freeze --exclude-editable | grep -v '^voxhear') > requirements.lock
	rm -rf .lockenv

clean-runs:
	rm -rf runs
