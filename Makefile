# Two entry points: `make run` starts the bot, `make test` checks everything.
# Both create .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/supportbot run

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/mypy bot tests bench

test: lint
	$(BIN)/pytest -q -rs

bench: $(STAMP)
	$(BIN)/python -m bench.store_window
	$(BIN)/python -m bench.overhead
	$(BIN)/python -m bench.slack_load
	$(BIN)/python -m bench.discord_load
	$(BIN)/python -m bench.kb
	$(BIN)/python -m bench.caching

clean:
	rm -rf $(VENV) build *.egg-info
