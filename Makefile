# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Each creates .venv/ and installs the project into it when missing (CPU torch 2.13.0 via
# constraints.txt; GPU users: `pip install -e ".[dev]"` in your own env keeps your CUDA torch).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_JOBS ?=

.PHONY: run test test-slow test-evals test-all bench claims results results-real clean-venv help

help:
	@echo "make run        the main job on the embedded default (tiny world: align -> fine-tune -> eval)"
	@echo "make test       the default test suite (< 10 min on 2 CPU cores)"
	@echo "make test-slow  the slow checks only (marked @pytest.mark.slow)"
	@echo "make test-evals installs the [evals] extra (lm-eval, evalplus) and runs the MATH500 / MBPP+ tests"
	@echo "make claims     the claims ledger: python -m theory.claims"
	@echo "make bench      the benchmark scripts (numbers go in the README)"
	@echo "make results    rerun the tiny-world presets and regenerate the README's results block (~1 h)"
	@echo "make results-real  rerun the SmolLM2 preset and regenerate the README's real-model block (~1 h)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# Tiny models run fastest on one intra-op thread (measured: 2 threads on 2 shared cores were 10x slower).
run: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m llm.run

# The README's tiny-world numbers: every preset rerun (two at a time, one thread each), stored in
# results/tiny_world/, rendered into the README block that tests/llm/test_results.py checks.
results: $(STAMP)
	$(BIN)/python -m llm.results all

# The README's real-model numbers (SmolLM2-135M-Instruct, ~1 h): results/real_model/, block results:real-model.
results-real: $(STAMP)
	$(BIN)/python -m llm.results all --presets smollm2_safety --jobs 1

claims: $(STAMP)
	$(BIN)/python -m theory.claims

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest $(PYTEST_JOBS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# The papers' standard evaluations need the optional [evals] extra, which `make test` does not install.
test-evals: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,evals]"
	$(BIN)/python -m pytest -m "" tests/llm/test_standard_evals.py

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
