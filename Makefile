# comms-bridge developer entry points. Everything installs itself into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
SAM_CLI_VERSION := 1.170.0
PY_SOURCES := layers/shared/python/comms_bridge simulator/comms_sim tools/comms_bridge_tools functions benchmarks

.PHONY: help setup test lint typecheck cfn-lint unit docs demo bench build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(SAM_STAMP):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

setup: $(STAMP) ## create .venv with every dependency (done by the other targets too)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the package, the simulator, the tools, the handlers and the benchmarks
	$(BIN)/mypy $(PY_SOURCES)

cfn-lint: $(STAMP) $(SAM_STAMP) ## cfn-lint and sam validate --lint on template.yaml
	$(BIN)/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(SAM_VENV)/bin/sam validate --lint --template template.yaml

unit: $(STAMP) ## unit tests only (no servers)
	$(BIN)/pytest tests/product/unit

test: $(STAMP) lint typecheck cfn-lint docs ## everything CI runs: lint, types, template checks, all tests, the docs
	$(BIN)/pytest

docs: $(STAMP) ## the documentation site into site/ (mkdocs build --strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: $(STAMP) ## the whole pipeline locally (ARGS=--push: with the Event Streams push path)
	$(BIN)/python -m comms_bridge_tools.demo $(ARGS)

bench: $(STAMP) ## cost and speed figures against the simulator and moto server
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.push

build: $(STAMP) $(SAM_STAMP) ## sam build for python3.13/arm64 (no Docker) and check the built layer
	$(SAM_VENV)/bin/sam build --template template.yaml
	$(BIN)/python -m comms_bridge_tools.check_build .aws-sam/build

clean: ## remove the virtualenvs and build output
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache site
