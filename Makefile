# The two commands of the README: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev lint worker web
.DEFAULT_GOAL := run

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Test and lint packages on top: `make test` needs them, `make run` and the production image do not.
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Web server and worker on the embedded defaults (or on what the environment configures); Ctrl-C stops both.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_local_accounts
	@echo "Starting the web server on http://$(HOST):$(PORT)/ and a worker; Ctrl-C stops both."
	@trap 'kill 0' INT TERM EXIT; \
	$(PY) -m celery -A lumbar_platform worker --beat --loglevel=INFO --concurrency=2 \
		--without-gossip --without-mingle --without-heartbeat --schedule var/celerybeat-schedule & \
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload & \
	wait

# The import contracts in pyproject.toml first: a second, not a test run, to learn the layering broke.
test: install-dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
