# droplab: `make demo` runs the lecture's comparison end to end; `make notebook` executes the
# lecture's notebook; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SEEDS ?= 3
EPOCHS ?= 10
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo notebook test install data check bench clean

demo: install data
	$(BIN)/droplab check
	$(BIN)/droplab compare --seeds $(SEEDS) --epochs $(EPOCHS)

# The lecture as a notebook: notebooks/dropout.py (jupytext) executed headless into
# notebooks/dropout.ipynb, with its outputs and curves (full setting: a few minutes on 2 cores).
notebook: install data
	$(BIN)/python notebooks/execute.py notebooks/dropout.py

# tests/, then every Examples:: block in src/ as a doctest (pyproject.toml: testpaths, --doctest-modules).
test: install data
	$(BIN)/python -m pytest -q

# The venv, with torch pinned to the CPU build (constraints.txt); redone when the deps change.
# The test extra includes the notebook's runner (jupytext, nbclient, ipykernel).
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

# Fashion-MNIST: use a copy droplab finds; otherwise try Debian's package. If that is not
# possible either, droplab downloads the official files itself (or says how to get them).
data: install
	@$(BIN)/python -c "from droplab.data import find_data_dir as f; print('Fashion-MNIST:', f(download=False))" 2>/dev/null \
	  || { command -v apt-get >/dev/null \
	       && $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null \
	       && echo "Fashion-MNIST: installed Debian's dataset-fashion-mnist"; } \
	  || echo "Fashion-MNIST: not installed; droplab will try to download it"

check: install
	$(BIN)/droplab check

bench: install data
	$(BIN)/python benchmarks/dropout_op.py
	$(BIN)/python benchmarks/kernel_start.py
	$(BIN)/python benchmarks/train_seed.py
	$(BIN)/python benchmarks/train_floor.py
	$(BIN)/python benchmarks/cli_dropout.py
	$(BIN)/python benchmarks/verdict_calibration.py
	$(BIN)/python benchmarks/study_scaling.py
	$(BIN)/python benchmarks/swap_memory.py

clean:
	rm -rf $(VENV) src/*.egg-info .pytest_cache notebooks/dropout.ipynb
