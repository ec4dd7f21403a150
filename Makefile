# The commands a user types. `make demo` runs the stack locally with no keys;
# `make test` installs what the tests need and runs every tier.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
SLICES := 1 2 3 4 5 6 7 8 9 10 11 12

.PHONY: clients help install system system-stack demo doctor test test-real lint typecheck unit integration stack bench clean lock $(addprefix slice-,$(SLICES))

help:
	@echo "make demo      local stack: real LiteLLM, Postgres, Redis and a mock provider (no keys)"
	@echo "make test      lint, type-check and every test tier"
	@echo "make test-real the stack tier on the real pinned images (a machine that can pull them)"
	@echo "make doctor    check the stack definition (docker-compose.vps.yml, vps.env, ...)"
	@echo "make install   create .venv with ops installed"
	@echo "make bench     gateway overhead and service memory benchmarks"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# OpenCode, the coding client tested against the gateway (npm, pinned by its lock file).
OPENCODE := clients/opencode/node_modules/.bin/opencode
$(OPENCODE): clients/opencode/package-lock.json $(STAMP)
	scripts/npm.sh --prefix clients/opencode install --no-audit --no-fund --loglevel=error
	touch $@

# n8n 2.40.7 on Node 24 for the n8n tests and `ops bench memory` (ops.tools.n8n_install finds it): about
# 4 minutes and 2.8 GB once, in a cache outside the clone, so a new clone on the same machine reuses it.
# The stamp is named after the version: a second run is instant, a new version installs again.
AISTACK_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/aistack
export AISTACK_CACHE
N8N_STAMP := $(AISTACK_CACHE)/n8n/.installed-n8n-2.40.7
$(N8N_STAMP):
	PYTHON=$(PYTHON) scripts/install-n8n.sh "$(AISTACK_CACHE)" >/dev/null
	touch $@

clients: $(OPENCODE) $(N8N_STAMP)

system:
	@bash scripts/bootstrap-system.sh

system-stack:
	@bash scripts/bootstrap-system.sh stack

demo: system install
	$(BIN)/ops demo --keep-running

doctor: install
	$(BIN)/ops doctor

lint: install
	$(BIN)/ruff check ops tests
	$(BIN)/ruff format --check ops tests

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: system install clients
	$(BIN)/pytest tests/integration

stack: system-stack install $(N8N_STAMP)
	$(BIN)/pytest tests/stack

# make slice-N: plan, confirm, apply (which verifies, and rolls back if verify fails)
$(addprefix slice-,$(SLICES)): slice-%: install
	$(BIN)/ops slice $* --plan
	$(BIN)/ops slice $* --apply

# every tier; the stack tier runs beside the other two (scripts/test-tiers.sh), each printing its slowest tests
test: system-stack install clients lint typecheck
	PYTEST=$(BIN)/pytest scripts/test-tiers.sh --durations=20

# The stack tier on the real pinned images instead of the stand-ins, for a machine that can pull them;
# `make test` does not run it. The preflight asks each image's registry first and stops, naming why, when
# none is reachable ("no container registry reachable: ...") or an image is missing.
test-real: system-stack install
	$(BIN)/ops images check
	AISTACK_REAL_IMAGES=1 $(BIN)/pytest tests/stack

bench: system install
	$(BIN)/ops bench gateway
	$(BIN)/ops bench memory
	$(BIN)/ops bench backup
	$(BIN)/ops bench events

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Refresh the pins of every transitive dependency after changing pyproject.toml.
lock: install
	$(BIN)/pip freeze --exclude-editable > constraints.txt
