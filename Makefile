# ogpanel: `make demo` runs the panel with the simulator and demo data; `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
# Django 6 needs Python >= 3.12; the official Kalshi client (used in tests) needs 3.13.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
PY := $(VENV)/bin/python
DEMO_PORT ?= 8000

.PHONY: demo test browser-deps check lint types deploy-check migrations-check lock lock-check bench-quick clean

# requirements*.txt are locks with hashes, generated from requirements*.in by `make lock`.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.13 not found: install it or run make PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 13), "ogpanel needs Python 3.13"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $@

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work offline).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: browser tests will be skipped (apt-get install chromium)"; fi; \
	fi

# The demo keeps its SQLite database and its encryption key file under var/ (both git-ignored).
demo: export OGPANEL_DEBUG = 1
demo: export OGPANEL_ENCRYPTION_KEY_FILE = var/encryption.keys
demo: $(VENV)/.installed
	mkdir -p var
	test -s var/encryption.keys || $(PY) manage.py make_encryption_key > var/encryption.keys
	$(PY) manage.py migrate --no-input
	$(PY) manage.py demo --port $(DEMO_PORT)

test: $(VENV)/.installed browser-deps
	$(VENV)/bin/pytest

# Everything CI checks before the tests (.ci/run): lint, types, deployment settings, migrations, the lock.
check: lint types deploy-check migrations-check lock-check

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(VENV)/.installed
	$(VENV)/bin/mypy

# Production-like settings: DEBUG off, a long random SECRET_KEY, a real host name; a warning fails too.
deploy-check: $(VENV)/.installed
	SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" ALLOWED_HOSTS=panel.example.com \
	  OGPANEL_DEBUG=0 $(PY) manage.py check --deploy --fail-level WARNING

migrations-check: $(VENV)/.installed
	OGPANEL_DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

# The locks: requirements.txt (runtime; the Dockerfile installs it) and requirements-dev.txt (tests and tools),
# every package pinned with its hashes, for any platform on Python 3.13, from PyPI (uv's default index).
# Adding a package: edit requirements.in or requirements-dev.in, then `make lock`. Versions already locked
# stay where they are; `make lock UPGRADE=1` moves everything to the newest releases.
UV_COMPILE = $(abspath $(VENV))/bin/uv pip compile --quiet --universal --python-version 3.13 --generate-hashes \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: $(VENV)/.installed
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-dev.in -o requirements-dev.txt

# The locks still match the .in files: compiled again in a scratch copy, nothing may change.
lock-check: $(VENV)/.installed
	@scratch=$$(mktemp -d) && cp requirements*.in requirements*.txt $$scratch/ && \
	  (cd $$scratch && $(UV_COMPILE) requirements.in -o requirements.txt && \
	    $(UV_COMPILE) requirements-dev.in -o requirements-dev.txt) && \
	  diff -u requirements.txt $$scratch/requirements.txt && diff -u requirements-dev.txt $$scratch/requirements-dev.txt \
	  || { echo "requirements*.txt do not match requirements*.in: run make lock"; rm -rf $$scratch; exit 1; }; \
	  rm -rf $$scratch; echo "requirements*.txt match requirements*.in"

# Every benchmark at its smallest size, all at once: on SQLite, or with BENCH_DATABASE_URL=postgresql://.../ogpanel_bench_NAME
# each on its own PostgreSQL database (ogpanel_bench_NAME_<script>, dropped and created anew).
bench-quick: $(VENV)/.installed browser-deps
	$(PY) benchmarks/quick.py $(if $(BENCH_DATABASE_URL),--database-url $(BENCH_DATABASE_URL))

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
