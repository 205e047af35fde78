# Apex Webhooks: `make run` runs the whole system, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The venv's own installers, pinned past the old ones `python -m venv` bundles (known CVEs).
VENV_TOOLS := pip==26.3 setuptools==84.2.1
# Public payload corpora the tests run against (npm packages pinned in tests/corpora).
CORPORA := tests/corpora/node_modules/.installed

.DEFAULT_GOAL := help
.PHONY: help run test lint bench migrate apikey apikeys apikey-revoke key rotate-key backup restore clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade $(VENV_TOOLS)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

$(CORPORA): tests/corpora/package.json tests/corpora/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make test needs npm (Node.js) to install the test corpora in tests/corpora; install npm and run make test again" >&2; exit 1; }
	npm ci --prefix tests/corpora --no-audit --no-fund
	touch $(CORPORA)

run: $(STAMP) ## run web + worker + scheduler on embedded defaults (http://127.0.0.1:5000; PORT=…, WORKERS=3)
	$(BIN)/python -m launcher.run

test: $(STAMP) $(CORPORA) lint ## lint, type-check and run the whole test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) ## benchmarks: print numbers and ratios against a baseline from the same run
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.endpoints
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.slowclients

migrate: $(STAMP) ## apply database migrations (DATABASE_URL, default the SQLite file in var/)
	$(BIN)/alembic upgrade head

apikey: $(STAMP) ## create an API key (printed once): make apikey NAME=me
	@$(BIN)/python -m launcher.apikey create $(or $(NAME),local)

apikeys: $(STAMP) ## list the API keys of the local database
	@$(BIN)/python -m launcher.apikey list

apikey-revoke: $(STAMP) ## revoke one: make apikey-revoke ID=key_…
	@$(BIN)/python -m launcher.apikey revoke $(ID)

key: $(STAMP) ## print a new APEX_SECRET_KEY (a Fernet key)
	@$(BIN)/python -c "from apex.secretbox import generate_key; print(generate_key())"

rotate-key: $(STAMP) ## new development key, every stored secret re-sealed with it (stop make run first)
	@$(BIN)/python -m launcher.rotatekey

backup: $(STAMP) ## back up the database and APEX_SECRET_KEY together: make backup [TO=folder]
	@$(BIN)/python -m launcher.backup create $(TO)

restore: $(STAMP) ## restore both (processes stopped): make restore FROM=backups/apex-…
	@$(BIN)/python -m launcher.backup restore $(FROM)

clean: ## remove the virtualenv and local data (refused while stored secrets need var/secret.key; FORCE=1)
	@$(PYTHON) -m launcher.clean $(if $(FORCE),--force)
	rm -rf $(VENV)
