# zootrain: `make up` runs the whole stack and a demo job; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help up down demo test test-fast compose-test wheelhouse fuzz chaos mutants lint format openapi \
	bench peers install zookeeper test-packages clean

# A bare `make` lists the targets rather than starting processes: `make up` is always spelt out.
.DEFAULT_GOAL := help

help:                            ## list the targets
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z-]*:[^=]*## / {printf "  %-14s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

up: install zookeeper            ## start ZooKeeper, the job service and two workers; run a demo job
	@scripts/up.sh
	@scripts/demo.sh

down:                            ## stop what `make up` started
	@scripts/down.sh

demo:                            ## submit a demo job to a running stack
	@scripts/demo.sh

# Most of an integration test is waiting (on a session timeout, a worker, a child), so two
# pytest-xdist processes, each with its own ZooKeeper and shared stacks, finish the suite sooner
# on two cores; worksteal evens out the long tests. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: install test-packages      ## the whole suite (starts its own ZooKeeper servers)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: install               ## unit tests only, no server
	$(BIN)/pytest tests/unit

compose-test: install            ## docker/docker-compose.yml for real: images, stack, jobs, failover (root or sudo)
	@tests/compose/run.sh

wheelhouse: install              ## wheels/: the image's dependencies, so docker/Dockerfile builds offline
	@scripts/wheelhouse.sh "$(BIN)/python" wheels

fuzz: install zookeeper          ## the long fuzz: 10,000+ schemathesis requests, authenticated
	ZOOTRAIN_FUZZ_EXAMPLES=1500 ZOOTRAIN_FUZZ_MIN_REQUESTS=10000 \
		$(BIN)/pytest tests/contract -k schemathesis

chaos: install zookeeper          ## the long chaos run: 200 jobs through every fault (SEED=n)
	$(BIN)/python -m tests.chaos.chaos --long --seed $${SEED:-1}

mutants: install zookeeper        ## mutation check: deliberate bugs in the critical paths, each must fail its tests
	$(BIN)/python scripts/mutants.py

LINTED := zootrain app workers tests bench testkit scripts

lint: install                    ## ruff (lint and format check) and mypy; what .pre-commit-config.yaml runs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

format: install                  ## apply ruff's formatting and its safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format $(LINTED)

openapi: install                 ## regenerate the params schemas and openapi.json from the app
	$(BIN)/python -m zootrain.ml.param_schema > zootrain/ml/param_schemas.json
	$(BIN)/python -m app.openapi > openapi.json

bench: install zookeeper peers   ## benchmarks, printed as ratios to same-run baselines and peers
	$(BIN)/python -m bench

peers: $(VENV)/.peers            ## the bench's peers (Dask, Ray): the `peers` extra, for `make bench` only

$(VENV)/.peers: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,peers]'
	@touch $@

install: $(STAMP)               ## .venv/ with zootrain and its test tools (reinstalled when pyproject.toml changes)

$(STAMP): pyproject.toml
	@scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

zookeeper:                       ## Debian's zookeeper package, when it is missing
	@scripts/ensure-packages.sh zookeeper

test-packages:                   ## the Debian packages the tests use (zookeeper, docker-compose, chromium)
	@scripts/ensure-packages.sh zookeeper docker-compose chromium

clean: down                      ## stop the stack; delete var/ (tokens included), wheels/ and .venv/
	rm -rf var wheels $(VENV)
