# Build and test entry points. `make test` is all CI needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3.11
VENV   := .venv
ANVIL_DIR := $(CURDIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin
# ape finds anvil (and vyper) on PATH; .bin/anvil is a node shim, so use the real binary.
RUN := PATH="$(CURDIR)/$(VENV)/bin:$(ANVIL_DIR):$$PATH"
NETWORK ?= ethereum:local:foundry
ARGS ?=

# This machine's pip config lists file:// indexes that lack most packages, so pip
# warns once per package; hide only that line.
PIP_FILTER := { grep -v "is ignored: it is neither a file nor a directory" || true; }
PIP := $(VENV)/bin/pip
# The zk prover (docs/zk.md): EZKL declares no licence, so it lives in its own venv and runs
# only as a separate program; the example model's circuit, keys and EVM verifier go to .zk/.
ZK_VENV := .venv-zk
ZK_MODELS := .zk/models
# EZKL prints these notes on stderr for every circuit it lays out.
ZK_FILTER := { grep -v -e "columns for range-check" -e "low scale values" || true; }

.PHONY: venv node zk dapp redis docker chromium compile lint format test screenshots demo demo-faults demo-ai demo-ai-faults bench gas-snapshot clean distclean
.DELETE_ON_ERROR:

venv: $(VENV)/.stamp
node: node_modules/.stamp
zk: $(ZK_MODELS)/blobs/.stamp
dapp: dapp/dist/app.js

# pip is upgraded first: the bundled one is about twice as slow on this set.
$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 2>&1 | $(PIP_FILTER)

$(VENV)/.stamp: $(VENV)/bin/python requirements.txt pyproject.toml
	$(PIP) install -q --no-cache-dir -r requirements.txt 2>&1 | $(PIP_FILTER)
	$(PIP) install -q --no-deps -e . 2>&1 | $(PIP_FILTER)
	touch $@

$(ZK_VENV)/.stamp: requirements-zk.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..." >&2; exit 1; }
	@echo "zk: installing EZKL into $(ZK_VENV)"
	$(PYTHON) -m venv $(ZK_VENV)
	$(ZK_VENV)/bin/pip install -q --no-cache-dir -r requirements-zk.txt 2>&1 | $(PIP_FILTER)
	touch $@

# Rebuilt only when the tool, the models or the pins change; solcjs (npm's solc) needs node.
$(ZK_MODELS)/blobs/.stamp: $(ZK_VENV)/.stamp node_modules/.stamp requirements-zk.txt $(wildcard zk/*.py)
	@command -v node >/dev/null || { echo "error: node not found; the zk verifier is compiled with solcjs (install Node.js)" >&2; exit 1; }
	rm -rf $(ZK_MODELS)/blobs
	$(ZK_VENV)/bin/python zk/ezkl_tool.py build --name blobs --out $(ZK_MODELS)/blobs --solcjs node_modules/.bin/solcjs 2>&1 | $(ZK_FILTER)
	touch $@

# --ignore-scripts: the postinstall only downloads anvil when the platform package is missing.
node_modules/.stamp: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The dApp's bundle (docs/dapp.md), rebuilt only when its sources or the packages change.
dapp/dist/app.js: node_modules/.stamp dapp/build.mjs $(wildcard dapp/src/*.js)
	node dapp/build.mjs

# The keeper tests start their own redis-server; install Debian's when it is missing.
redis:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }; \
	  else echo "error: redis-server not found; install it (Debian: apt-get install redis-server)" >&2; exit 1; fi; }

# The agent tests need a Docker engine; they start a private dockerd when none answers.
# Install Debian's docker.io when dockerd is missing (root only; the tests say what is wrong otherwise).
docker:
	@command -v dockerd >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing docker.io (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }; \
	  else echo "note: dockerd not found and cannot be installed here; the agent tests need a Docker engine (DOCKER_HOST)" >&2; fi; }

# The dApp's browser tests drive Debian's chromium (Playwright, no browser download); install it when missing.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
	  else echo "note: chromium not found and cannot be installed here; the dApp's browser tests need it (Debian: apt-get install chromium)" >&2; fi; }

compile: venv
	$(RUN) $(VENV)/bin/ape compile

# Lint and format check (ruff, settings in pyproject.toml); `make format` rewrites the tree.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Forced: ape's cache does not notice edits to imported modules.
# Test files run in parallel (pytest-xdist), one worker more than there are cores unless
# TEST_WORKERS says otherwise: each worker has its own anvil, dockerd and Redis, and the end-to-end
# tests spend minutes waiting on challenge windows and blocks (with a worker per core the cores were
# busy 170 % of 200; one more worker fills that: 920 s against 1,001 s on 2 cores).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: venv node zk dapp redis docker chromium
	$(RUN) $(VENV)/bin/ape compile --force
	$(RUN) $(VENV)/bin/ape test tests --network $(NETWORK) -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

# The README's pictures of the dApp (docs/img/), taken by its browser tests.
screenshots: venv node dapp redis docker chromium
	$(RUN) $(VENV)/bin/ape compile --force
	COMPUTENET_SCREENSHOTS=$(CURDIR)/docs/img $(RUN) $(VENV)/bin/ape test tests/dapp/test_dapp.py --network $(NETWORK)

# The whole network on this machine, end to end (README: what it shows). DEMO_ARGS: see python -m demo --help.
DEMO_ARGS ?=
demo: venv node zk dapp redis docker
	$(RUN) $(VENV)/bin/ape compile
	$(RUN) $(VENV)/bin/python -m demo $(DEMO_ARGS)

# The same network under faults: a killed agent and keeper, Redis restarted, a dishonest agent.
demo-faults: venv node zk redis docker
	$(RUN) $(VENV)/bin/ape compile
	$(RUN) $(VENV)/bin/python -m demo --faults $(DEMO_ARGS)

# Real AI work (docs/ai.md): a digits classifier trained in rounds over several shards and nodes, then
# inference with it; demo-ai-faults kills a training node after a checkpoint and another resumes it.
demo-ai: venv node zk redis docker
	$(RUN) $(VENV)/bin/ape compile
	$(RUN) $(VENV)/bin/python -m demo --ai $(DEMO_ARGS)

demo-ai-faults: venv node zk redis docker
	$(RUN) $(VENV)/bin/ape compile
	$(RUN) $(VENV)/bin/python -m demo --ai --faults $(DEMO_ARGS)

# Every benchmark on the local stack (not part of `make test`): bench/results.json, bench/report.md
# and bench/plots/. BENCH_ARGS=--quick for a shorter run.
BENCH_ARGS ?=
bench: venv node dapp redis docker zk
	$(RUN) $(VENV)/bin/ape compile --force
	$(RUN) $(VENV)/bin/python bench/report.py $(BENCH_ARGS)

clean:
	rm -rf .build .cache .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -not -path "./$(ZK_VENV)/*" -not -path "./node_modules/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules $(ZK_VENV) .zk

# Rewrites the committed gas-snapshot from a fresh measurement; commit the diff on purpose.
gas-snapshot: venv node zk
	$(RUN) $(VENV)/bin/ape compile --force
	UPDATE_GAS_SNAPSHOT=1 $(RUN) $(VENV)/bin/ape test tests/gas --network $(NETWORK) -q
	cat gas-snapshot
