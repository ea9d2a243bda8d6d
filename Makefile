# Two commands do everything: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.repsim-installed
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint figures bench clean

setup: $(STAMP)

# --system-site-packages keeps a torch you already have (e.g. a CUDA build); only when
# none can be imported is the pinned CPU build installed, before repsim, so that pip never
# resolves a bare `torch` requirement to a multi-GB CUDA download.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e ".[test,dev]"
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m repsim.data --dataset synthetic --figure figures/stimuli.png

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
