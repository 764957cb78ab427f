# Every target sets up .venv by itself, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

HOST ?= 127.0.0.1
PORT ?= 8000
DB ?= gateway.sqlite
# With no SEGMIND_API_KEY, the fake upstream runs beside the gateway with ~7 s runs
# instead of ~11 min, so a demo finishes while you watch; override freely.
FAKE_FLAGS ?= --time-scale 0.01

.PHONY: run demo fake test lint format bench cassettes docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m proxy serve --host $(HOST) --port $(PORT) --db $(DB) \
		--with-fake --fake-args "$(FAKE_FLAGS)" --demo-team

# One four-scene run through the gateway and the fake, with its verified webhook (~10 s).
demo: $(STAMP)
	$(BIN)/python -m proxy demo

fake: $(STAMP)
	$(BIN)/python -m fakeserver --host $(HOST) --port 8001 $(FAKE_FLAGS)

# Coverage counts the servers and CLIs the suite starts too (pyproject: patch = subprocess),
# and fails under the floor there; `$(BIN)/coverage html` shows it line by line afterwards.
# The suite's time is mostly waiting (servers starting, sockets, browsers), not CPU: test
# files run on JOBS workers at once (pytest-xdist), each file's tests on one worker, so a
# module's servers start once. Tests marked `serial` (timing under load) run alone after.
JOBS ?= 4
test: lint
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -n $(JOBS) --dist loadfile -m "not serial"
	$(BIN)/coverage run -m pytest -m serial
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy bench

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/fakeserver.py

# docs/ as a site (MkDocs, offline, strict: a broken link or anchor fails) in build/site.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

cassettes: $(STAMP)
	$(BIN)/python -m tests.contract.record

clean:
	rm -rf $(VENV) build *.egg-info
