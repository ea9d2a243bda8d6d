# Two commands do everything: `make demo` and `make test`. Both create .venv on first use.
# `make docs` builds the documentation site into site/ (offline, --strict); `make test` does too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.repsim-installed
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint typecheck docs figures bench study clean clean-runs

# The demo: an early-fusion (layer 1) and a late-fusion (layer 3 of 2, branches narrowed to
# the early model's parameter count) network on the default synthetic data, their activations, and every figure. Each step is a file target, so a second
# `make demo` only redoes what is missing; `make clean-runs` starts over.
EARLY := runs/synthetic-f1-s0
LATE := runs/synthetic-f3-s0
FIGURES := cka_by_layer rsa_by_layer probes_by_layer ablation_sensitivity noise_robustness temporal_generalization rsa_over_time

setup: $(STAMP)

# --system-site-packages keeps a torch you already have (e.g. a CUDA build); only when
# none can be imported is the pinned CPU build installed, before repsim, so that pip never
# resolves a bare `torch` requirement to a multi-GB CUDA download. The venv's own pip (22.3
# or later with Python 3.11) installs everything here, so it is not upgraded first.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e ".[test,dev,docs]"
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy reads its settings (files, strictness) from pyproject.toml.
typecheck: $(STAMP)
	$(BIN)/mypy

# One pytest worker per core (pytest-xdist), each on one thread (tests/conftest.py), an idle
# worker taking tests from the other's queue (--dist worksteal: make test took 4m51s and 5m17s
# in two runs here, 5m56s with --dist load); mypy (one thread, half a minute) runs beside them,
# in the time the workers leave a core idle, and either failing fails the target. The docs
# build is one of the tests (tests/test_reference.py builds the site --strict, as `make docs`
# does, and checks the API pages), so it is not built a second time here.
test: lint
	$(BIN)/mypy & mypy=$$!; $(BIN)/python -m pytest -n auto --dist worksteal; tests=$$?; wait $$mypy && exit $$tests

# The documentation site, built offline: theme fonts off, no plugin fetches anything; --strict
# fails on a broken link or reference. Open site/index.html (search needs it served over http:
# python -m http.server -d site).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet

demo: $(STAMP) figures/stimuli.png $(EARLY)/activations.h5 $(LATE)/activations.h5
	$(BIN)/python -m repsim.report $(EARLY) $(LATE)
	$(MAKE) --no-print-directory figures

figures/stimuli.png: | $(STAMP)
	$(BIN)/python -m repsim.data --dataset synthetic --figure $@

# metrics.json is written last, so a run that stopped halfway is trained again.
runs/synthetic-f%-s0/metrics.json: | $(STAMP)
	$(BIN)/python -m repsim.train --fusion-layer $* --match-params --overwrite --out-dir $(@D)

# Clean, incongruent and each-modality-removed conditions: what the figure scripts read.
runs/%/activations.h5: runs/%/metrics.json
	$(BIN)/python -m repsim.extract $(<D)/ckpt.pt --snrs --overwrite

.SECONDARY:

figures: $(STAMP)
	@for name in $(FIGURES); do \
		echo "$(BIN)/python analyses/$$name.py"; \
		$(BIN)/python analyses/$$name.py || exit 1; \
	done

# The quick study (studies/quick.toml): 60 runs, two at a time, about 53 minutes on 2 cores;
# rerun to finish after a stop.
study: $(STAMP)
	$(BIN)/python -m repsim.study studies/quick.toml --jobs 2

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_extract.py
	$(BIN)/python benchmarks/bench_study.py
	$(BIN)/python benchmarks/bench_report.py
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_analysis.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_record.py
	$(BIN)/python benchmarks/bench_temporal.py

clean-runs:
	rm -rf runs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache site
