# Two commands matter: `make run` and `make test` (see README). Both set everything up;
# `make demo` tries the whole flow against a local Kroger stand-in.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: help run test demo lint format venv bench clean

help:
	@echo "make run    set up and serve the portal on http://127.0.0.1:$(PORT)/ (SQLite)"
	@echo "make test   set up and run every test (SQLite, PostgreSQL and browser tests)"
	@echo "make demo   the whole flow against a local Kroger stand-in (no Kroger account needed)"
	@echo "make lint   ruff and mypy"
	@echo "make bench  measure the service API's token endpoint (gunicorn, PostgreSQL)"

$(VENV)/.installed: pyproject.toml
	@bin/make-venv $(VENV)
	@touch $@

venv: $(VENV)/.installed

.env:
	@$(PY) bin/write-dotenv .env

run: venv .env
	@$(PY) manage.py migrate --noinput
	@$(PY) manage.py createcachetable
	@echo
	@echo "  The portal is at http://127.0.0.1:$(PORT)/  (the first account to sign up administers it)"
	@echo
	@$(PY) manage.py runserver 127.0.0.1:$(PORT)

test: venv
	@bin/run-tests

demo: venv .env
	@$(PY) bin/demo

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy connections_app tests bench

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv
	@bench/run

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache tests/artifacts
