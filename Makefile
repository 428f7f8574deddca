PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Most tests wait on timers and launchers rather than compute: more workers than the 2 cores keep both busy.
TEST_WORKERS ?= 4
# A test file to a worker (its module fixtures stay one), the long files first (tests/conftest.py).
PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: run test test-ahead test-link test-pg pg-server lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# pip compiles what it installs one file at a time; compileall does it on every core (half the wait).
	$(BIN)/pip install --quiet --no-compile -e '.[test]'
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') >/dev/null
	$(BIN)/python -m imaging.cutout_weights
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python launcher.py

test: $(STAMP) pg-server
	@# The console's browser test drives Debian's chromium (as root; sudo where it is not); the OCR tests and the
	@# console's screenshots want a CJK font.
	command -v chromium >/dev/null && ls /usr/share/fonts/truetype/wqy/wqy-microhei.ttc >/dev/null 2>&1 || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium fonts-wqy-microhei)
	$(BIN)/ruff check .
	@# Byte code is written even where PYTHONDONTWRITEBYTECODE is set: the suite starts some 200 launchers and
	@# stand-ins, and each would compile the project's modules again (~0.2 CPU-s a start on 2 busy cores).
	@started=$$(date +%s); PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q $(PARALLEL) --durations=15; status=$$?; \
		echo "make test: the suite took $$(( $$(date +%s) - started )) s"; exit $$status

# The whole suite with every process's wall clock a year ahead (tests/clock/sitecustomize.py): what the calendar
# would break shows now. CLOCK_SHIFT_DAYS=… moves it by another amount.
CLOCK_SHIFT_DAYS ?= 365

test-ahead: $(STAMP) pg-server
	@# time-machine is imported before pytest starts here, so pytest cannot rewrite it as a plugin: that it says so
	@# is expected (and only that warning is silenced).
	SHOP_TEST_CLOCK_SHIFT_DAYS=$(CLOCK_SHIFT_DAYS) PYTHONPATH=$(CURDIR)/tests/clock PYTHONDONTWRITEBYTECODE= \
		$(BIN)/python -m pytest -q \
		-W "ignore:Module already imported so cannot be rewritten; time_machine" \
		$(PARALLEL)

# The persistence tests run on both databases and the convention tests on PostgreSQL in `make test`;
# `make test-pg` runs the persistence tests and every e2e test with the launcher on PostgreSQL.

# The convention tests with the leader on one side of a link and every member in another network namespace
# (tests/link.py; needs root): README's second host, on one machine.
test-link: $(STAMP) pg-server
	SHOP_TEST_LINK=1 $(BIN)/python -m pytest -q tests/e2e/test_convention.py tests/e2e/test_network_locks.py

test-pg: $(STAMP) pg-server
	SHOP_TEST_DB=postgresql $(BIN)/python -m pytest -q tests/persistence tests/e2e

pg-server:
	@# PostgreSQL's server binaries (Debian keeps them off PATH, under /usr/lib/postgresql/<version>/bin): the
	@# tests start a server of their own from them in a temporary directory.
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

lint: $(STAMP)
	$(BIN)/ruff check .

BENCHES := ingress gateway conversations recovery render operations convention startup retention

bench: $(STAMP)
	@for b in $(BENCHES); do $(BIN)/python -m bench.$$b || exit 1; echo; done

clean:
	rm -rf $(VENV) data .pytest_cache
