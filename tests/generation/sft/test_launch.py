"""The fine-tuning stage across processes: `accelerate launch` of the same ``sft_train``.

2 CPU processes (gloo DDP) against 1 on the same records and global batch, bad options
refused before anything loads, a failing child's log tail, children that never outlive the
pipeline, and the shipped accelerate configs read by accelerate's own loader.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rsft.config import ConfigError, from_dict, to_dict
from rsft.generation import RFTConfig, RFTPipeline
from rsft.generation.config import SFTSection, check_accelerate_config
from rsft.generation.sft.job import read_job, write_job
from rsft.generation.sft.launch import SFTLaunchError, launch_sft
from rsft.generation.sft.train import sft_train

REPO = Path(__file__).resolve().parents[3]
CONFIGS_DIR = REPO / "configs" / "accelerate"
CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))
HERE = Path(__file__).parents[1]  # pipeline_rewards

# Float32 losses of the same steps, summed in another order: DDP all-reduces two half-batch
# gradients, and each process sums its own tokens. Observed differences are ~1e-7 relative.
LOSS_RTOL = 1e-5


def records(n: int) -> list[dict]:
    """Completions of different lengths, so the two processes see different token counts
    (their losses agree only because transformers divides by the tokens of all processes)."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {3 * i}?"},
                {"role": "assistant", "content": "so " * (i % 5) + str(4 * i)},
            ]
        }
        for i in range(n)
    ]


def write_records(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def history(out: Path) -> dict:
    return json.loads((out / "sft_history.json").read_text())


def sft_processes(root: Path) -> list[int]:
    """Live processes of the launched stage under ``root`` (launcher and workers)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().split(") ")[1][0]
        except (OSError, IndexError):
            continue
        if "rsft.generation.sft.worker" in cmd and str(root) in cmd and state != "Z":
            found.append(int(proc.name))
    return found


def wait_gone(root: Path, timeout: float) -> list[int]:
    deadline = time.time() + timeout
    while (left := sft_processes(root)) and time.time() < deadline:
        time.sleep(0.1)
    return left


def test_two_processes_match_one_with_the_same_global_batch(tiny_lm, tmp_path):
    """The shipped ddp.yaml on 2 CPU processes (the pipeline test below uses the config rsft
    writes when none is given)."""
    rows = records(16)
    data = write_records(tmp_path / "accepted.jsonl", rows)
    options = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "save_steps": 5}  # logs every step
    one = sft_train(tiny_lm, rows, tmp_path / "one", SFTSection(**options), seed=3, progress=False)
    two = launch_sft(
        tiny_lm,
        [data],
        tmp_path / "two",
        SFTSection(**options, processes=2, accelerate_config=str(CONFIGS_DIR / "ddp.yaml")),
        seed=3,
        device="cpu",
        progress=False,
    )
    a, b = history(tmp_path / "one"), history(tmp_path / "two")
    assert (a["processes"], a["per_process_batch"], a["global_batch"]) == (1, 4, 4)
    assert (b["processes"], b["per_process_batch"], b["global_batch"]) == (2, 2, 4)
    assert [s["step"] for s in a["steps"]] == [s["step"] for s in b["steps"]] == list(range(1, 9))
    loss_a = [s["loss"] for s in a["steps"]]
    loss_b = [s["loss"] for s in b["steps"]]
    assert loss_b == pytest.approx(loss_a, rel=LOSS_RTOL)
    assert loss_a[-1] < loss_a[0], "it trains"

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wa, wb = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    assert not (two / "training_args.bin").exists(), "no pickle in a model folder"
    assert not (tmp_path / "two" / "trainer").exists()
    log = (tmp_path / "two" / "sft.log").read_text()
    assert "'loss'" in log and "# exit 0" in log
    model = AutoModelForCausalLM.from_pretrained(str(two))
    tok = AutoTokenizer.from_pretrained(str(two))
    ids = tok(["What is 1 + 3?"], return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert not sft_processes(tmp_path)


@pytest.mark.slow  # LoRA under launch (plain SFT on 2 processes stays in make test)
def test_lora_on_two_processes_is_merged_like_one(tiny_lm, tmp_path):
    """LoRA under DDP: the main process merges the adapters. Without dropout the merged
    weights equal one process's (with sft.lora_dropout > 0 each process draws its own masks,
    and the runs agree only in distribution)."""
    import torch
    from safetensors.torch import load_file

    rows = records(16)
    data = write_records(tmp_path / "accepted.jsonl", rows)
    options = {"epochs": 2, "batch_size": 4, "lr": 1e-2, "save_steps": 5}
    options.update(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    one = sft_train(tiny_lm, rows, tmp_path / "one", SFTSection(**options), seed=0, progress=False)
    cfg = SFTSection(**options, processes=2)
    two = launch_sft(tiny_lm, [data], tmp_path / "two", cfg, seed=0, device="cpu", progress=False)
    base = load_file(str(Path(tiny_lm) / "model.safetensors"))
    wa, wb = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert wb.keys() == base.keys(), "merged: no adapter weights in the model"
    assert any(not torch.equal(base[k], wb[k]) for k in base)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    loss_a = [s["loss"] for s in history(tmp_path / "one")["steps"]]
    loss_b = [s["loss"] for s in history(tmp_path / "two")["steps"]]
    assert loss_b == pytest.approx(loss_a, rel=LOSS_RTOL)


def test_pipeline_runs_its_sft_stage_on_two_processes(tiny_lm, tmp_path, monkeypatch):
    from rsft.generation import pipeline as pipeline_module
    from rsft.tasks.arithmetic import prepare_arithmetic

    monkeypatch.syspath_prepend(str(HERE))

    def in_process(*args, **kwargs):
        raise AssertionError("sft.processes=2 must not fine-tune in the pipeline's process")

    monkeypatch.setattr(pipeline_module, "sft_train", in_process)
    paths = prepare_arithmetic(tmp_path / "data", n_train=8, n_eval=4, with_model=False)
    cfg = {
        "model": {"path": tiny_lm, "device": "cpu"},
        "data": {"train": paths["train"], "eval": paths["eval"]},
        "generation": {"k": 2, "max_new_tokens": 6, "batch_size": 16},
        "verifier": {"kind": "function", "function": "pipeline_rewards:digit_share"},
        "selection": {"rule": "top_fraction", "fraction": 0.5},
        "sft": {"epochs": 1, "batch_size": 2, "lr": 1e-3, "save_steps": 5, "processes": 2},
        "rounds": 1,
        "output_dir": str(tmp_path / "run"),
        "progress": False,
    }
    result = RFTPipeline(from_dict(RFTConfig, cfg)).run()
    sft = tmp_path / "run" / "round_1" / "sft"
    kept = result["rounds"][0]["kept"]
    h = history(sft)
    assert h["processes"] == 2 and h["global_batch"] == 2
    assert h["steps"][-1]["step"] == -(-kept // 2), "one epoch of the accepted set"
    job = json.loads((sft / "sft_job.json").read_text())
    assert job["records"] == [str((sft.parent / "accepted.jsonl").resolve())]
    assert (sft / "model" / "model.safetensors").is_file() and "after" in result["rounds"][0]


@pytest.fixture
def rft_dict(tiny_lm, tmp_path):
    from rsft.tasks.arithmetic import prepare_arithmetic

    paths = prepare_arithmetic(tmp_path / "data", n_train=4, n_eval=2, with_model=False)
    return {
        "model": {"path": tiny_lm, "device": "cpu"},
        "data": {"train": paths["train"], "eval": paths["eval"]},
        "sft": {"batch_size": 4},
        "output_dir": str(tmp_path / "run"),
    }


def accelerate_file(tmp_path, name: str, **options) -> str:
    base = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU"}
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**base, **options}))
    return str(path)


@pytest.mark.parametrize(
    "sft, message",
    [
        ({"processes": 0}, "sft.processes must be >= 1"),
        ({"processes": -2}, "sft.processes must be >= 1"),
        ({"processes": 3}, r"sft.batch_size \(4\) must be divisible by sft.processes \(3\)"),
        ({"accelerate_config": "/no/such.yaml"}, "sft.accelerate_config '/no/such.yaml' does not"),
        ({"accelerate_config": "BAD_YAML"}, "is not valid YAML"),
        ({"accelerate_config": "UNKNOWN_KEY"}, "accelerate cannot read it.*unknown keys"),
        ({"accelerate_config": "NO_TYPE"}, "accelerate cannot read it.*distributed_type"),
        ({"processes": 2, "accelerate_config": "FOUR"}, "num_processes: 4 but sft.processes is 2"),
        ({"processes": 2, "accelerate_config": "TWO_MACHINES"}, "num_machines: 2"),
        ({"processes": 2, "accelerate_config": "SHARDED"}, "fsdp_state_dict_type: SHARDED"),
        ({"processes": 2, "accelerate_config": "FSDP", "lora": True}, "shards the weights"),
        ({"processes": 2, "accelerate_config": "FSDP"}, "uses FSDP, which rsft runs on GPUs only"),
    ],
)
def test_bad_options_stop_before_anything_loads(rft_dict, tmp_path, monkeypatch, sft, message):
    import transformers

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    files = {
        "BAD_YAML": lambda: _write(tmp_path / "bad.yaml", "distributed_type: [MULTI_GPU\n"),
        "UNKNOWN_KEY": lambda: accelerate_file(tmp_path, "u.yaml", num_proceses=2),
        "NO_TYPE": lambda: _write(tmp_path / "n.yaml", "num_processes: 2\n"),
        "FOUR": lambda: accelerate_file(tmp_path, "4.yaml", num_processes=4),
        "TWO_MACHINES": lambda: accelerate_file(tmp_path, "m.yaml", num_machines=2),
        "SHARDED": lambda: accelerate_file(
            tmp_path,
            "s.yaml",
            distributed_type="FSDP",
            fsdp_config={"fsdp_state_dict_type": "SHARDED_STATE_DICT"},
        ),
        "FSDP": lambda: str(CONFIGS_DIR / "fsdp.yaml"),
    }
    name = sft.get("accelerate_config")
    if name in files:
        sft = dict(sft, accelerate_config=files[name]())
    rft_dict["sft"].update(sft)
    with pytest.raises(ConfigError, match=message):
        RFTPipeline(from_dict(RFTConfig, rft_dict))
    assert not Path(rft_dict["output_dir"]).exists()


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_the_cli_names_the_option_and_exits_2(rft_dict, tmp_path, capsys):
    from rsft.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(rft_dict))
    assert main(["rft", "--config", str(cfg), "sft.processes=3"]) == 2
    err = capsys.readouterr().err
    assert "sft.batch_size (4) must be divisible by sft.processes (3)" in err
    assert "sft.batch_size=3" in err


def test_the_cli_stops_with_exit_1_and_the_childs_error(rft_dict, tmp_path, capsys, monkeypatch):
    from rsft.cli.main import main

    def failed(self):
        raise SFTLaunchError("the fine-tuning child command failed (exit 1): ValueError: x")

    monkeypatch.setattr(RFTPipeline, "run", failed)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(rft_dict))
    assert main(["rft", "--config", str(cfg), "sft.processes=2"]) == 1
    assert "rsft rft: training stopped: the fine-tuning child" in capsys.readouterr().err


def test_a_failing_child_shows_its_log_tail(tiny_lm, tmp_path):
    bad = records(4)
    bad[2]["messages"] = bad[2]["messages"][:1]  # no assistant turn: sft_train refuses it
    data = write_records(tmp_path / "accepted.jsonl", bad)
    cfg = SFTSection(epochs=1, batch_size=2, processes=2)
    with pytest.raises(SFTLaunchError) as err:
        launch_sft(tiny_lm, [data], tmp_path / "sft", cfg, seed=0, device="cpu", progress=False)
    message = str(err.value)
    first, tail = message.split("\n", 1)
    assert "exit 1" in first and str(tmp_path / "sft" / "sft.log") in first
    cause = "ValueError: an accepted record must end with the assistant's turn."
    assert cause in first and "(rank " in first  # the first worker error, named up front
    assert cause in tail and tail.startswith("  | ")  # and in the log's tail (torchrun's record)
    assert "Traceback" in (tmp_path / "sft" / "sft.log").read_text()
    assert not (tmp_path / "sft" / "model").exists()
    assert not wait_gone(tmp_path, 10)


PARENT = """
import signal, sys
from pathlib import Path
# Python's own Ctrl-C handler, even when started from a background job (whose shell left
# SIGINT ignored, and an ignored SIGINT is inherited)
signal.signal(signal.SIGINT, signal.default_int_handler)
from rsft.generation.config import SFTSection
from rsft.generation.sft.launch import launch_sft
root = Path(sys.argv[1])
cfg = SFTSection(epochs=float(sys.argv[3]), batch_size=4, lr=1e-3, save_steps=4, processes=2)
launch_sft(sys.argv[2], [root / "accepted.jsonl"], root / "sft", cfg, seed=0, device="cpu",
           progress=False)
"""


def start_parent(tiny_lm: str, root: Path, epochs: float) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    write_records(root / "accepted.jsonl", records(16))
    script = root / "parent.py"
    script.write_text(PARENT)
    return subprocess.Popen(
        [sys.executable, str(script), str(root), tiny_lm, str(epochs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # a full pipeline run under launch, interrupted (make test-all)
def test_ctrl_c_in_the_pipeline_stops_every_process(tiny_lm, tmp_path):
    proc = start_parent(tiny_lm, tmp_path, epochs=500)  # minutes: stopped long before
    log = tmp_path / "sft" / "sft.log"
    deadline = time.time() + 120
    while not (log.is_file() and "'loss'" in log.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    assert len(sft_processes(tmp_path)) == 3  # the launcher and two workers
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    assert "KeyboardInterrupt" in proc.stderr.read()
    assert not wait_gone(tmp_path, 5)


@pytest.mark.slow  # two pipeline runs under launch, one killed (make test-all)
def test_a_sigkilled_pipeline_takes_its_children_along_and_resumes(tiny_lm, tmp_path, killer):
    """SIGKILL the pipeline after TRL's first checkpoint: no process is left, and the rerun
    resumes from that checkpoint and ends with an uninterrupted run's losses."""
    killed = tmp_path / "killed"
    proc = start_parent(tiny_lm, killed, epochs=6)  # 24 steps, checkpoints every 4
    trainer = killed / "sft" / "trainer"
    killer(proc, lambda: (trainer / "checkpoint-4" / "trainer_state.json").is_file())
    assert not wait_gone(killed, 10)
    assert not (killed / "sft" / "model").exists()
    rerun = start_parent(tiny_lm, killed, epochs=6)
    full = start_parent(tiny_lm, tmp_path / "full", epochs=6)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    assert full.wait(timeout=300) == 0, full.stderr.read()
    a, b = history(killed / "sft"), history(tmp_path / "full" / "sft")
    assert [s["step"] for s in a["steps"]] == list(range(1, 25))
    assert [s["loss"] for s in a["steps"]] == [s["loss"] for s in b["steps"]]
    log = (killed / "sft" / "sft.log").read_text()
    assert log.count("# exit 0") == 1
    assert re.search(r"resuming the fine-tuning from \S+/checkpoint-(4|8|12|16|20)\n", log)


@pytest.mark.slow  # a killed stage resumed on another process count (make test-all)
def test_a_stage_killed_on_one_process_resumes_on_two(tiny_lm, tmp_path, monkeypatch):
    """sft.processes is not part of a run's identity: a stage stopped in step 7 of a
    1-process run (checkpoint 4 saved) ends on 2 processes with the uninterrupted
    1-process run's losses, within the float tolerance."""
    import trl

    rows = records(16)
    data = write_records(tmp_path / "accepted.jsonl", rows)
    options = {"epochs": 3, "batch_size": 4, "lr": 1e-3, "save_steps": 4}
    real_step, calls = trl.SFTTrainer.training_step, []

    def stop_in_step_7(self, *args, **kwargs):
        calls.append(self.state.global_step)
        if len(calls) == 7:
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "training_step", stop_in_step_7)
    with pytest.raises(KeyboardInterrupt):
        sft_train(tiny_lm, rows, tmp_path / "sft", SFTSection(**options), seed=0, progress=False)
    monkeypatch.setattr(trl.SFTTrainer, "training_step", real_step)
    two = SFTSection(**options, processes=2)
    launch_sft(tiny_lm, [data], tmp_path / "sft", two, seed=0, device="cpu", progress=False)
    sft_train(tiny_lm, rows, tmp_path / "full", SFTSection(**options), seed=0, progress=False)
    assert "resuming the fine-tuning from" in (tmp_path / "sft" / "sft.log").read_text()
    a, b = history(tmp_path / "sft"), history(tmp_path / "full")
    assert a["processes"] == 2 and [s["step"] for s in a["steps"]] == list(range(1, 13))
    loss_a = [s["loss"] for s in a["steps"]]
    assert loss_a == pytest.approx([s["loss"] for s in b["steps"]], rel=LOSS_RTOL)


def test_the_number_of_processes_is_not_part_of_a_runs_identity(rft_dict):
    """A killed run may resume on another number of processes (and a run from before these
    options existed keeps its hash); any option that changes the result still refuses."""
    RFTPipeline(from_dict(RFTConfig, rft_dict))._prepare_output()
    ddp = str(CONFIGS_DIR / "ddp.yaml")
    rft_dict["sft"].update(processes=2, accelerate_config=ddp)
    RFTPipeline(from_dict(RFTConfig, rft_dict))._prepare_output()
    rft_dict["sft"]["lr"] = 1e-3
    with pytest.raises(ConfigError, match="different options"):
        RFTPipeline(from_dict(RFTConfig, rft_dict))._prepare_output()


DIES_WITH_PARENT = """
import os, signal, sys, time
from rsft.processes import die_with_parent
if sys.argv[1] == "arm":
    die_with_parent(signal.SIGKILL, os.getppid())
print(os.getpid(), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("arm", [True, False])
def test_a_child_that_arms_the_death_signal_dies_with_its_parent(tmp_path, arm):
    """The middle process is SIGKILLed; its child, silent (no broken pipe to notice), dies
    with it only when armed. Unarmed is the control: it survives, and is then killed here."""
    child = tmp_path / "child.py"
    child.write_text(DIES_WITH_PARENT)
    middle = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, {str(child)!r}, {'arm' if arm else 'no'!r}]); "
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = int(middle.stdout.readline())
    middle.send_signal(signal.SIGKILL)
    middle.wait()

    def alive() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
        except (OSError, IndexError):
            return False

    deadline = time.time() + 3
    while alive() and time.time() < deadline:
        time.sleep(0.05)
    survived = alive()
    if survived:
        os.kill(pid, signal.SIGKILL)
    assert survived is not arm


def test_the_job_spec_is_plain_json_checked_key_by_key(tmp_path):
    cfg = SFTSection(processes=2, batch_size=4)
    job = write_job(
        tmp_path / "job.json",
        base="model",
        records=["a.jsonl"],
        out=tmp_path / "sft",
        sft=to_dict(cfg),
        seed=7,
        dtype="auto",
        device="cpu",
        trust_remote_code=False,
        stage="the fine-tuning",
    )
    assert read_job(tmp_path / "job.json") == job
    assert Path(job["base"]).is_absolute() and job["sft"]["processes"] == 2
    assert from_dict(SFTSection, job["sft"], "sft") == cfg
    (tmp_path / "bad.json").write_text(json.dumps(dict(job, seed="7")))
    with pytest.raises(ValueError, match="'seed' must be int"):
        read_job(tmp_path / "bad.json")


def launch_options() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return set(vars(launch_command_parser().parse_args(["x.py"])))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_accelerate_configs_parse_with_accelerate(path):
    """accelerate's own loader reads each file (unknown top-level keys and a bad
    distributed_type fail it); every nested key is an `accelerate launch` option (the loader
    would copy a misspelt one silently); rsft accepts the file for 4 processes."""
    from accelerate.commands.config.config_args import load_config_from_file

    cluster = load_config_from_file(str(path))
    assert cluster.num_processes == -1, "sft.processes sets it"
    known = launch_options()
    nested = {**cluster.fsdp_config, **cluster.deepspeed_config}
    assert nested.keys() <= known, nested.keys() - known
    header = path.read_text().split("compute_environment")[0]
    assert f"sft.accelerate_config=configs/accelerate/{path.name}" in header
    assert "NOT run here" in header
    import importlib.util

    if "deepspeed" in path.name and importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match="pip install deepspeed"):
            check_accelerate_config(str(path), 4, lora=False)
    else:
        assert check_accelerate_config(str(path), 4, lora=False)["distributed_type"]
