# `make train` and `make test` do all the set-up: virtual environment, pinned install.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# Test workers: one per core (XLA compiles single-threaded, so two workers use both cores).
WORKERS ?= 2

.PHONY: setup train test test-slow test-all lint bench table lock clean

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=python3.x (3.10-3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

train: setup
	$(VENV)/bin/pjrl train $(ARGS)

# the fast tier (a few minutes on 2 cores): every module, each adapter's conformance on at least one env
test: setup
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup -q -m "not slow" $(ARGS)

# the slow tier: learning runs, multi-process runs, examples and the heavy conformance envs
test-slow: setup
	$(PY) -m pytest -n $(WORKERS) --dist loadgroup -q -m slow $(ARGS)

# both tiers, with check_env on every env of every installed library (see README)
test-all: setup
	PJRL_ALL_ENVS=1 $(PY) -m pytest -n $(WORKERS) --dist loadgroup -q $(ARGS)

# ruff over the whole tree, mypy over the packages (settings in pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/ppo_gymnax.py --reference ../shared/reference/bench_purejaxrl.py

# the README's results table: trains what is missing under runs/table, evaluates, rewrites the table
table: setup
	$(PY) benchmarks/table.py $(ARGS)

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^pjrl' > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) runs .pytest_cache
