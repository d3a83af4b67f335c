# zoneout-study: set-up, the main job, the test suite.
#   make demo   installs everything and runs the quickstart study on the embedded defaults
#   make test   installs the test extras and runs the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# constraints.txt keeps torch on the CPU build available locally (any other request pulls a
# multi-gigabyte CUDA build) and Ray on the version the docker images use.
PIP_INSTALL := $(PY) -m pip install --quiet --constraint constraints.txt
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
SYSTEM_STAMP := $(VENV)/.installed-system
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test install install-test system-packages lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

# The zoneout layer's CPU extension is compiled here, once (g++/ninja; it warns and falls back to
# pure PyTorch if that fails), rather than inside the first trial or test that needs it.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP_INSTALL) -e ".[data]"
	$(PY) -c "from trials.zoneout import _cpu_ext; _cpu_ext.load()"
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP_INSTALL) -e ".[data,test]"
	touch $@

# Debian packages the tests and reports use: Chromium (PNG export, browser tests) and the real
# Fashion-MNIST IDX files. Installed with apt-get when running as root; otherwise say what to do.
$(SYSTEM_STAMP): | $(PY)
	@if command -v chromium >/dev/null 2>&1 && [ -d /usr/share/datasets/fashion-mnist ]; then \
		echo "system packages present"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq || true) && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium dataset-fashion-mnist >/dev/null; \
	else \
		echo "note: install Debian's chromium and dataset-fashion-mnist (sudo apt-get install chromium dataset-fashion-mnist)"; \
	fi
	touch $@

install: $(STAMP)

install-test: $(TEST_STAMP) $(SYSTEM_STAMP)

system-packages: $(SYSTEM_STAMP)

demo: $(STAMP) $(SYSTEM_STAMP)
	$(VENV)/bin/zoneout-study run examples/quickstart.yaml

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
