# zootrain: `make up` runs the whole stack and a demo job; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down demo test test-fast compose-test wheelhouse fuzz chaos mutants lint openapi bench \
	install zookeeper test-packages clean

up: install zookeeper            ## start ZooKeeper, the job service and two workers; run a demo job
	@scripts/up.sh
	@scripts/demo.sh

down:                            ## stop what `make up` started
	@scripts/down.sh

demo:                            ## submit a demo job to a running stack
	@scripts/demo.sh

test: install test-packages      ## the whole suite (starts its own ZooKeeper servers)
	$(BIN)/pytest

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
	$(BIN)/python -m bench.chaos --long --seed $${SEED:-1}

mutants: install zookeeper        ## mutation check: deliberate bugs in the critical paths, each must fail its tests
	$(BIN)/python scripts/mutants.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check zootrain app workers
	$(BIN)/mypy

openapi: install                 ## regenerate the params schemas and openapi.json from the app
	$(BIN)/python -m zootrain.ml.param_schema > zootrain/ml/param_schemas.json
	$(BIN)/python -m app.openapi > openapi.json

bench: install zookeeper         ## benchmarks, printed as ratios to same-run baselines
	$(BIN)/python -m bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

zookeeper:
	@scripts/ensure-packages.sh zookeeper

test-packages:
	@scripts/ensure-packages.sh zookeeper docker-compose chromium

clean: down
	rm -rf var wheels $(VENV)
