# dxweb: the verbs a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## run: serve the dashboard with an embedded database, broker and worker (Ctrl-C stops all)
run: install
	$(BIN)/python manage.py serve

## test: install the test dependencies and run the whole suite
test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: run the benchmarks in bench/ and print their figures
bench: install-test
	$(BIN)/python -m bench

## lint: check the code's style and format (ruff, configured in pyproject.toml)
lint: install-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache
