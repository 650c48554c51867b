# Two entry points for a fresh Debian 12 machine: `make demo` and `make test`.
# Both install what they need: host tools via apt (scripts/install-system-deps.sh), Python
# dependencies into .venv.

VENV   := .venv
BIN    := $(VENV)/bin
SYSDEP := $(VENV)/.system-deps
PYDEP  := $(VENV)/.python-deps
BOARD  ?= rpi4
# pytest workers: every boot is one emulator thread (TCG, one thread per emulator), so two
# at a time keep both CPUs of a 2-CPU machine busy; one test at a time to each worker, so
# the long boots, collected first (tests/conftest.py), are spread over both.
JOBS   ?= 2

.PHONY: deps demo test lint unit bench clean

$(SYSDEP): scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	mkdir -p $(VENV)
	touch $@

$(PYDEP): $(SYSDEP) pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

deps: $(PYDEP)

demo: deps
	$(BIN)/xenkit build --board $(BOARD) -o out/$(BOARD)
	$(BIN)/xenkit run --check out/$(BOARD)

# Tests are type-checked too; benchmarks and scripts run as scripts, each with its own
# folder on sys.path, so they are checked that way.
lint: deps
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/mypy tests
	MYPYPATH=src:benchmarks $(BIN)/mypy --explicit-package-bases benchmarks/*.py scripts/*.py

unit: deps
	$(BIN)/pytest -q -m "not slow"

test: lint
	$(BIN)/pytest -q -n $(JOBS) --maxschedchunk 1 --durations=30

bench: deps
	$(BIN)/python benchmarks/uboot_script.py
	$(BIN)/python benchmarks/build_and_boot.py
	$(BIN)/python benchmarks/tftp_serve.py
	$(BIN)/python benchmarks/tick_jitter.py --board $(BOARD)
	$(BIN)/python benchmarks/guest_start.py --board $(BOARD)
	$(BIN)/python benchmarks/pc_live.py
	$(BIN)/python benchmarks/chunk_serve.py
	$(BIN)/python benchmarks/net_root.py

clean:
	rm -rf out
