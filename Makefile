# nanbench: every target is one line a user could type. `make help` lists them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SWEEP  ?= default
JOBS   ?= 1
PORT   ?= 5000
PG_PORT ?= 5433
SERVER_WORKERS ?= 2
SERVER_HOST ?= 127.0.0.1
STORE  ?= sqlite:///results/mlflow.db
ARGS   ?=

.PHONY: help install test test-fast sweep summary report examples boundaries diagnose diagnose-example bench screenshots ui faults server server-stop cluster-check clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,parallel,cluster]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install nanbench (editable) with its dev, parallel and cluster extras

test: $(STAMP)  ## run the whole test suite, slow tests included
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP)  ## run the tests not marked slow
	$(PY) -m pytest -q -m "not slow" $(ARGS)

sweep: $(STAMP)  ## train every run of sweeps/SWEEP.yaml (default: default; JOBS=N workers; STORE=URI records there), then summarize
	$(PY) -m nanbench -m --config-dir sweeps --config-name $(SWEEP) $(if $(filter-out 1,$(JOBS)),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS)) $(if $(filter command line environment,$(origin STORE)),tracking.uri=$(STORE)) $(ARGS)

summary: $(STAMP)  ## re-summarize sweep SWEEP from its MLflow experiment into results/SWEEP/
	$(PY) -m nanbench.summary --sweep $(SWEEP) --tracking-uri $(STORE) --out results/$(SWEEP)

report:  ## print the path of sweep SWEEP's self-contained HTML report
	@test -f results/$(SWEEP)/summary.html || { echo "no report yet: make sweep SWEEP=$(SWEEP)" >&2; exit 1; }
	@echo "$(CURDIR)/results/$(SWEEP)/summary.html"

examples: $(STAMP)  ## run the documents' examples and check their claims: results/examples.md
	$(PY) -m nanbench.studies.examples --out results --tracking-uri $(STORE) $(ARGS)

boundaries: $(STAMP)  ## largest stable learning rate per configuration: results/boundaries.md
	$(PY) -m nanbench.studies.boundary --grid sweeps/boundaries.yaml --out results $(ARGS)

diagnose: $(STAMP)  ## why one configuration goes NaN and what fixes it: results/diagnose/<name>/ (ARGS="dataset=... optimizer=...")
	$(PY) -m nanbench.diagnose $(if $(filter command line environment,$(origin STORE)),tracking.uri=$(STORE)) $(ARGS)

HOUSES = results/diagnose/houses
diagnose-example: $(STAMP)  ## the README's worked example: writes houses.csv and houses.keras, diagnoses them: results/diagnose/houses/
	$(PY) -m tools.houses $(HOUSES)/files
	$(PY) -m nanbench.diagnose dataset=csv dataset.path=$(HOUSES)/files/houses.csv dataset.target=price \
		model=keras model.path=$(HOUSES)/files/houses.keras optimizer=sgd optimizer.lr=0.1 diagnose.name=houses \
		$(if $(filter command line environment,$(origin STORE)),tracking.uri=$(STORE)) $(ARGS)

bench: $(STAMP)  ## measure speed side by side: results/benchmark.md and .csv
	$(PY) -m tools.benchmark --out results $(ARGS)

screenshots: $(STAMP)  ## the MLflow UI and the HTML report checked in headless Chromium: results/screenshots/
	$(PY) -m tools.screenshots --out results/screenshots

ui: $(STAMP)  ## serve the MLflow UI over the project's store on 127.0.0.1:$(PORT) (a busy port: exit 2)
	@$(PY) -m nanbench.cli ui --port $(PORT) --store $(STORE)

faults: $(STAMP)  ## kill, overfill and misconfigure real sweeps; check the store after each: results/faults.md
	$(PY) -m tools.faults --out results $(ARGS)

server: $(STAMP)  ## PostgreSQL (results/server/, 127.0.0.1:$(PG_PORT)) and an MLflow server on $(SERVER_HOST):$(PORT) in front of it
	@$(PY) -m nanbench.cluster.server start --port $(PORT) --pg-port $(PG_PORT) --workers $(SERVER_WORKERS) --host $(SERVER_HOST)

server-stop: $(STAMP)  ## stop what make server started
	@$(PY) -m nanbench.cluster.server stop

cluster-check: $(STAMP)  ## a sweep through a 2-node loopback Ray cluster into the server, a node killed mid-sweep: one JSON line
	$(PY) -m nanbench.cluster.check $(ARGS)

clean:  ## remove Hydra's outputs/ (the MLflow store and results/ stay)
	rm -rf outputs multirun
