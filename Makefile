# Two commands on a fresh machine: `make demo` and `make test`. uv is bootstrapped if missing.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=
# Parallel test processes (pytest-xdist), each with its own Prefect server. The suite mostly
# waits on servers, subprocesses and chat deliveries; each worker also pays for its own
# collection and server start (about 45 CPU-seconds), so 3 suit two cores. A module is one unit
# of work (its module fixtures are set up once), taken in collection order: slow ones first.
TEST_WORKERS ?= 3

.PHONY: install test demo lint automations serve bench

$(UV):
	python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv
	@echo "uv installed; if 'uv' is not found later: export PATH=\"$(HOME)/.local/bin:\$$PATH\""

install: $(UV)
	$(UV) sync --frozen

test: install
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

demo: install
	$(UV) run --frozen python -m deployments.demo

lint: install
	$(UV) run --frozen ruff check .

automations: install
	$(UV) run --frozen python -m deployments.automations --chat-block $(or $(CHAT_BLOCK),ops-chat)

serve: install
	$(UV) run --frozen python -m deployments.serve
