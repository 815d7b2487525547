# Codetron: two commands matter on a fresh machine (see README.md):
#   make demo   -- the whole pipeline on the tiny preset, bundled data, CPU
#   make test   -- set up the environment and run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.codetron-installed
# torch is pinned for this CPU workplace (a local CPU wheel); on GPU clusters install the CUDA build
# of torch first and run `pip install -e .[train,gpu]` (or the roles the node has) instead of `make setup`.
# setup installs every CPU role plus the test tools (`.[all]`): the suite exercises all stages.
TORCH  ?= torch==2.13.0

.PHONY: setup demo test test-fast test-durations slurm-deps sandbox-deps lang-deps bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[all]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m codetron demo

# Slurm tests start a real single-node cluster; its Debian packages are installed when missing
# (root with apt), otherwise those tests report why they did not run.
slurm-deps:
	@if ! command -v slurmctld >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing slurm-wlm + munge from Debian"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null) || echo "slurm install failed"; \
	fi

# The eval sandbox prefers bubblewrap (falls back to its fork-server without it, and says so).
sandbox-deps:
	@if ! command -v bwrap >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing bubblewrap from Debian"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) || echo "bubblewrap install failed"; \
	fi

# Toolchains for HumanEvalPack / MultiPL-E execution (JavaScript, Java + javatuples, Go + testify, C++
# with boost and OpenSSL, Rust + the harness's crates rand/regex/md5 and cargo to build them once).
# Measured on Debian 12: ~50 s and ~1 GB, most of it Go and Rust's std; a language left without its
# toolchain or libraries reports so in one line per task. The crates and a Go build cache with testify
# are built on first use into /var/cache/codetron/lang-deps (eval/langdeps.py).
LANG_PKGS := nodejs default-jdk-headless libjavatuples-java golang-go golang-github-stretchr-testify-dev \
	g++ libboost-dev libssl-dev rustc cargo librust-rand-dev \
	librust-regex-dev librust-regex+default-dev librust-md5-dev
lang-deps: setup
	@missing=""; for p in $(LANG_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing from Debian"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
			|| echo "toolchain install failed:$$missing"; \
	fi
	@# npm (Debian's, unless node came with its own) installs the JS modules the harness's problems require
	@if ! command -v npm >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing npm from Debian"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null || echo "npm install failed"; \
	fi
	@$(BIN)/python -c "from codetron.eval.langdeps import install_js_modules as i; print('JavaScript modules in', i())" \
		|| echo "JavaScript modules (js-md5) not installed: the npm registry is needed once"

# Two pytest-xdist workers (one per core here; TEST_WORKERS=0 runs in one process). Each test file is
# one unit of work, the Slurm tests and files sharing an expensive fixture one group (tests/conftest.py
# schedules them); the groups that took longest last time start first (pytest's cache).
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --no-loadscope-reorder)
# Python's bytecode cache on, whatever the environment says (PYTHONDONTWRITEBYTECODE=1 here): the suite
# starts some hundreds of interpreters, and each pytest worker would rewrite every test module again.
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest tests -ra -q --timeout=900

test: setup slurm-deps sandbox-deps lang-deps
	$(PYTEST) --durations=20 $(XDIST)

test-fast: setup
	$(PYTEST) --durations=10 -m "not slow and not slurm" $(XDIST)

# After a full `make test`: its per-test seconds become the schedule a fresh clone (CI) starts from.
test-durations:
	$(BIN)/python tests/helpers/durations.py

bench: setup
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
