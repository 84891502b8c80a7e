# One place for the commands the README and CI use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,traffic,bench]"
	touch $(STAMP)

## setup: the virtualenv with every dependency, and the Kafka jars for the embedded broker
setup: $(STAMP)
	$(BIN)/agentstream setup

## demo: the main job (embedded Kafka, a worker, the generator, a summary)
demo: setup
	$(BIN)/agentstream demo risk

## test: unit and integration tests (the integration tests start their own embedded Kafka)
test: setup
	$(BIN)/pytest -q

## lint: ruff
lint: setup
	$(BIN)/ruff check streams connectors tests perf
	$(BIN)/ruff format --check streams connectors tests perf

clean:
	rm -rf $(VENV) .kafka .agentstream
