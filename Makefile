# Two commands for a newcomer: `make run` (Roster on SQLite) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Roster needs Python 3.11 or newer"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "python venv is missing: sudo apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/roster demo

# The Samba tests in one process (the machine has one DC), then the rest on three workers: the
# suite mostly waits on servers and subprocesses (docs/testing.md §1).
test: $(STAMP)
	$(BIN)/python -m pytest -m samba
	$(BIN)/python -m pytest -n 3 -m "not samba"

# The gates CI runs (.ci/run): lint, formatting, types (mypy --strict on app/, settings in
# pyproject.toml) and the import contracts (import-linter's layers and forbidden imports).
lint: $(STAMP)
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy app
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .grimp_cache .import_linter_cache roster.db roster.db-wal roster.db-shm
