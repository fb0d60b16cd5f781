# The two commands of the README are `make run` and `make test`; both build the
# environment first (`make setup`, quick when nothing changed).
VENV ?= .venv
PY := $(VENV)/bin/python
export BARTSMILES_DATA ?= $(abspath ../shared/data)

.PHONY: setup run test clean-venv

setup:
	VENV=$(VENV) bash scripts/setup_env.sh

run: setup
	$(VENV)/bin/bartsmiles run

test: setup
	$(PY) -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
