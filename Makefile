# ogpanel: `make demo` runs the panel with the simulator and demo data; `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
# Django 6 needs Python >= 3.12; the official Kalshi client (used in tests) needs 3.13.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
PY := $(VENV)/bin/python
DEMO_PORT ?= 8000

.PHONY: demo test browser-deps check clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.13 not found: install it or run make PYTHON=/path/to/python3.13"; exit 1; }
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 13), "ogpanel needs Python 3.13"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
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

check: $(VENV)/.installed
	OGPANEL_DEBUG=1 $(PY) manage.py check
	OGPANEL_DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
