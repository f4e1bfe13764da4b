"""The options of one rejection-sampling fine-tuning run of a language model (``rsft rft``).

A YAML config mirrors these sections: ``model``, ``data``, ``generation``, ``engine``, ``verifier``,
``selection``, ``sft`` (:mod:`rsft.generation.sft.config`), ``eval`` and the top-level run
options. Bad combinations fail in ``__post_init__`` with a message, before a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rsft.config import ConfigError, opt, section
from rsft.generation.engines.config import EngineConfig
from rsft.generation.prompts import check_answer_pattern
from rsft.generation.selection import BETA_FIX, MIN_BETA, Rule, make_rule
from rsft.generation.sft.config import (  # noqa: F401 (the sft section, re-exported)
    ACCELERATE_HINT,
    SFTSection,
    check_accelerate_config,
    check_sft_launch,
)
from rsft.progress import PROGRESS_HELP, Progress
from rsft.tracking import REPORT_TO_HELP, check_report_to, require_backends


@section("model")
@dataclass
class LMConfig:
    """The pretrained causal language model: the proposal q(y|x) of round 1."""

    path: str = opt(
        "",
        help="A transformers causal-LM folder with its tokenizer (the embedded default "
        "is made by `rsft prepare arithmetic`), or a Hub name org/name (read through the "
        "Hugging Face cache). Its chat template formats the prompts.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt(
        "auto", help="Weights dtype: auto is float32 on CPU, bfloat16 on a GPU that has it."
    )
    device: Literal["auto", "cpu", "cuda"] = opt("auto", help="auto: cuda when available.")
    trust_remote_code: bool = opt(
        False,
        help="Let the model folder run its own code (a config.json with auto_map), in "
        "generation and fine-tuning. Only for folders you trust (docs/security.md).",
    )
    revision: str | None = opt(
        None, help="A model.path named by Hub name: its branch, tag or commit (default: main)."
    )


@section("data")
@dataclass
class PromptDataConfig:
    """Prompts with reference answers: JSONL, CSV, parquet, or a dataset saved to disk."""

    train: str = opt("", help="Prompts the model generates for and learns from.")
    eval: str = opt("", help="Held-out prompts for pass@1 / pass@k (disjoint from train).")
    prompt_column: str = opt("prompt", help="The column holding each prompt's text.")
    answer_column: str | None = opt(
        "answer",
        help="The column holding each reference answer (null for verifiers that need none, "
        "e.g. a reward model).",
    )
    system_prompt: str | None = opt(
        None, help="A system message put before every prompt (the template's own if unset)."
    )
    max_train_prompts: int | None = opt(None, ge=1, help="Use only the first N training prompts.")
    max_eval_prompts: int | None = opt(None, ge=1, help="Use only the first N held-out prompts.")
    solution_column: str | None = opt(
        None,
        help="A column holding each training prompt's worked reference solution (ending in "
        "its answer): what train_on: reference or accepted+reference fine-tunes on.",
    )
    group_column: str | None = opt(
        None,
        help="A held-out column whose values split pass@1 into groups in the results and "
        "the compare table (e.g. seen: whether a prompt's phrasing occurs in training).",
    )
    train_split: str = opt("train", help="data.train named by Hub name (org/name): its split.")
    eval_split: str = opt("test", help="data.eval named by Hub name: its split.")
    subset: str | None = opt(None, help="Hub datasets: the subset (config name), e.g. main.")
    revision: str | None = opt(None, help="Hub datasets: the branch, tag or commit.")
    answer_pattern: str | None = opt(
        None,
        help="A regex with one group that finds the reference answer in answer_column, e.g. "
        "'#### *(.+)$' for a worked solution ending '#### 72' (GSM8K); a row it does not "
        "match is refused.",
    )

    def __post_init__(self) -> None:
        check_answer_pattern(self.answer_pattern, self.answer_column)


@section("generation")
@dataclass
class GenerationConfig:
    """How the candidates are sampled from the current model."""

    k: int = opt(4, ge=1, help="Completions sampled per training prompt.")
    temperature: float = opt(1.0, gt=0, help="Sampling temperature.")
    top_p: float = opt(
        1.0, gt=0, le=1, help="Nucleus sampling: keep the smallest top-p mass (1: off)."
    )
    max_new_tokens: int = opt(64, ge=1, help="Longest completion, in tokens.")
    batch_size: int = opt(64, ge=1, help="Sequences generated per forward batch.")
    chunk_prompts: int = opt(
        64, ge=1, help="Prompts per saved chunk: a killed run resumes after its last saved chunk."
    )
    backend: Literal["auto", "transformers", "vllm"] = opt(
        "auto",
        help="vllm: vLLM engines (OpenAI-compatible servers rsft starts, or engine.endpoints); "
        "transformers: batched generate in this process; auto: vllm when a GPU and vLLM are "
        "present, else transformers.",
    )
    dtype: Literal["model", "auto", "float32", "bfloat16", "float16"] = opt(
        "model",
        help="Dtype of generation (and evaluation): model (model.dtype, the default), auto "
        "(bfloat16 where the CPU or GPU computes it natively, else float32), or a dtype.",
    )

    template_timeout: float = opt(
        10.0,
        gt=0,
        help="Seconds the model's chat template may take to render one prompt (checked in a "
        "worker process before any prompt is generated from); a template past it is "
        "refused, instead of hanging the run.",
    )


@section("verifier")
@dataclass
class VerifierConfig:
    """How a completion is scored: a reward r(x, y), 1/0 for verifiers."""

    kind: Literal["numeric", "regex", "math_verify", "function", "reward_model"] = opt(
        "numeric",
        help="numeric: the completion's last number equals the reference; regex: the "
        "pattern's group equals the reference; math_verify: math-verify's equivalence; "
        "function: your fn(prompt, completion, reference) -> float; reward_model: a "
        "sequence-classification model's score.",
    )
    tolerance: float = opt(
        1e-6,
        ge=0,
        only_with=("kind", ("numeric",)),
        help="numeric: the largest accepted absolute difference.",
    )
    pattern: str | None = opt(
        None, only_with=("kind", ("regex",)), help="regex: the pattern that extracts the answer."
    )
    group: int = opt(
        1, only_with=("kind", ("regex",)), help="regex: which group of the pattern is the answer."
    )
    function: str | None = opt(
        None,
        only_with=("kind", ("function",)),
        help="function: the import path 'pkg.module:fn'; rsft imports and runs that code "
        "(docs/security.md).",
    )
    reward_model: str | None = opt(
        None,
        only_with=("kind", ("reward_model",)),
        help="reward_model: a transformers model folder (its own code is never run).",
    )
    workers: int = opt(
        4, ge=1, help="Processes scoring per-sample verifiers (threads when timeout is null)."
    )
    timeout: float | None = opt(
        10.0,
        gt=0,
        what="a number of seconds > 0",
        fix="Or null: no limit.",
        help="Seconds one candidate may take to score (every kind but reward_model). Scoring "
        "runs in worker processes, and one past the limit is killed: that candidate gets no "
        "reward, its error is recorded and counted (timeouts), and the run goes on. null: no "
        "limit (threads; a hostile answer like 9^9^9^9 can then hang math_verify forever).",
    )

    def __post_init__(self) -> None:
        needs = {"regex": "pattern", "function": "function", "reward_model": "reward_model"}
        key = needs.get(self.kind)
        if key and not getattr(self, key):
            raise ConfigError(f"verifier.kind: {self.kind} needs verifier.{key}.")

    def options(self) -> dict:
        """Keyword options of :func:`~rsft.generation.scoring.verifiers.make_verifier` here."""
        return {
            "numeric": {"tolerance": self.tolerance},
            "regex": {"pattern": self.pattern, "group": self.group},
            "math_verify": {},
            "function": {"path": self.function},
            "reward_model": {"path": self.reward_model},
        }[self.kind]


@section("selection")
@dataclass
class SelectionConfig:
    """Which candidates the model learns from, and the random control of the same size."""

    rule: Literal["correct", "tilted", "best_of_k", "top_fraction", "random"] = opt(
        "correct",
        help="correct: reward >= threshold (RFT, STaR, ReST-EM); tilted: exact rejection "
        "sampling of p ∝ q·exp(r/beta) with M = exp(r_max/beta); best_of_k: the best "
        "completion per prompt (RAFT); top_fraction: the best `fraction` of all candidates; "
        "random: as many candidates as `correct` keeps, drawn at random (a control arm).",
    )
    threshold: float = opt(
        1.0,
        help="correct (and random, whose size it sets): the smallest reward that counts as "
        "correct.",
    )
    beta: float = opt(
        1.0,
        ge=MIN_BETA,
        fix=BETA_FIX,
        only_with=("rule", ("tilted",)),
        help="tilted: the temperature beta of exp(r/beta).",
    )
    r_max: float | None = opt(
        None,
        only_with=("rule", ("tilted",)),
        help="tilted: a bound on the reward, giving M = exp(r_max/beta) (1 for a 0/1 "
        "verifier); the round's largest reward when unset.",
    )
    fraction: float = opt(
        0.25,
        gt=0,
        le=1,
        only_with=("rule", ("top_fraction",)),
        help="top_fraction: the share of candidates kept.",
    )
    dedup: Literal["exact", "normalized", "none"] = opt(
        "normalized",
        help="Drop a completion already accepted for the same prompt: exact text, or "
        "normalized (case and whitespace), or none.",
    )
    max_per_prompt: int | None = opt(
        None, ge=1, help="Keep at most this many accepted completions per prompt (ReST-EM: 10)."
    )
    control: Literal["none", "random"] = opt(
        "none",
        help="random: also fine-tune on a random selection of the same size from the same "
        "candidates, and evaluate it, so the filter's own value is measured.",
    )

    def accept_rule(self) -> Rule:
        """The accept rule these options describe, as an object (:mod:`.selection`)."""
        return make_rule(
            self.rule, threshold=self.threshold, beta=self.beta, r_max=self.r_max,
            fraction=self.fraction,
        )  # fmt: skip


@section("eval")
@dataclass
class EvalConfig:
    """Held-out evaluation after every round: greedy pass@1, sampled pass@k, distinct-n.

    A completion counts as correct when its reward is at least ``eval.threshold`` (1, the
    reward of a right answer from the built-in 0/1 verifiers). It is not
    ``selection.threshold``: which candidates training keeps is one question, whether an
    answer is right another (a threshold of 0 keeps every candidate, and would score every
    held-out answer, empty ones too, as right).
    """

    k: int = opt(
        0,
        ge=0,
        help="Completions sampled per held-out prompt for pass@k and diversity (0: only the "
        "greedy pass@1).",
    )
    temperature: float = opt(1.0, gt=0, help="Sampling temperature of the pass@k completions.")
    max_new_tokens: int | None = opt(None, ge=1, help="Longest completion (default: generation's).")
    batch_size: int | None = opt(None, ge=1, help="Sequences per batch (default: generation's).")
    distinct_n: int = opt(2, ge=1, help="n of the distinct-n diversity metric.")
    threshold: float = opt(
        1.0,
        help="A held-out completion counts as correct when its reward is at least this; 1 "
        "for the built-in 0/1 verifiers. Independent of selection.threshold.",
    )


@section("")
@dataclass
class RFTConfig:
    model: LMConfig = opt(factory=LMConfig, help="The pretrained language model.")
    data: PromptDataConfig = opt(factory=PromptDataConfig, help="Training and held-out prompts.")
    generation: GenerationConfig = opt(factory=GenerationConfig, help="Sampling candidates.")
    engine: EngineConfig = opt(factory=EngineConfig, help="vLLM engines (backend: vllm).")
    verifier: VerifierConfig = opt(factory=VerifierConfig, help="Scoring candidates.")
    selection: SelectionConfig = opt(factory=SelectionConfig, help="Accepting candidates.")
    sft: SFTSection = opt(factory=SFTSection, help="Fine-tuning on the accepted set.")
    eval: EvalConfig = opt(factory=EvalConfig, help="Held-out evaluation.")
    rounds: int = opt(
        2,
        ge=0,
        help="Rounds of generate, score, accept, fine-tune, evaluate (0: only evaluate the "
        "base model, the `base` arm of a comparison).",
    )
    train_on: Literal["accepted", "reference", "accepted+reference"] = opt(
        "accepted",
        help="What each round fine-tunes on: accepted (the kept candidates: RFT); reference "
        "(the prompts' reference solutions, data.solution_column, with no generation: plain "
        "fine-tuning, SFT); accepted+reference (both, a reference repeated by an accepted "
        "candidate kept once: the RFT paper's training set).",
    )
    start_from: Literal["previous", "base"] = opt(
        "previous",
        help="Where each round's fine-tuning starts: previous (the last round's model, "
        "which also generates) or base (the pretrained model, as in ReST-EM; the last "
        "round's model still generates).",
    )
    data_mode: Literal["replace", "accumulate"] = opt(
        "replace",
        help="replace: fine-tune on this round's accepted set; accumulate: on every "
        "round's accepted sets so far.",
    )
    seed: int = opt(0, help="Seed of sampling, acceptance coins and fine-tuning.")
    output_dir: str = opt("runs/rft", help="Every round's generations, data, model and scores.")
    resume: Literal["auto", "never"] = opt(
        "auto",
        help="auto: continue a killed run at its last finished stage (never regenerating "
        "what is saved), refused if its options or its data.train, data.eval or model.path "
        "changed since; never: start over, deleting what an earlier run wrote in output_dir "
        "(round_* folders, engines/, results.json, summary.md, pass_at_1.png, config.yaml, "
        "state.json) and nothing else.",
    )
    progress: Progress = opt(True, help=PROGRESS_HELP.format(unit="round"))
    report_to: list[str] | str = opt(
        factory=list,
        help=REPORT_TO_HELP.format(unit="round") + " The SFT stage reports to the same "
        "trackers through TRL, its files under round_<n>/sft/trackers.",
    )

    def __post_init__(self) -> None:
        if self.train_on != "accepted" and not self.data.solution_column:
            raise ConfigError(
                f"train_on: {self.train_on} fine-tunes on reference solutions: set "
                "data.solution_column to the column holding them (a worked solution ending in "
                "the answer, e.g. 'solution')."
            )
        self.report_to = check_report_to(self.report_to)
        e = self.engine
        if e.endpoints:
            if self.generation.backend != "vllm":
                raise ConfigError(
                    "engine.endpoints are vLLM servers: set generation.backend: vllm to use them."
                )
            if e.replicas > 1:
                raise ConfigError(
                    "engine.replicas counts the engines rsft starts; with engine.endpoints, "
                    "list every endpoint instead."
                )
            if not (self.sft.lora and self.start_from == "base"):
                raise ConfigError(
                    "engine.endpoints keep the weights they were started with, so each round's "
                    "model reaches them as a LoRA adapter loaded at run time: set sft.lora: true "
                    "and start_from: base (the servers need --enable-lora, "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, and read access to output_dir)."
                )


def preflight(cfg: RFTConfig) -> None:
    """The checks run once before any model loads, not while the config is built: that the
    inputs are named (in the config, or given to the pipeline as objects), then what reads
    files or asks the machine (the fine-tuning's accelerate config, its devices, the
    trackers' packages)."""
    required = {
        "model.path": (cfg.model.path, "a transformers causal-LM folder (or model=)"),
        "data.train": (cfg.data.train, "a JSONL/CSV/parquet file of prompts (or train=)"),
        "data.eval": (cfg.data.eval, "held-out prompts to measure pass@1 on (or eval=)"),
    }
    for name, (value, what) in required.items():
        if not value:
            raise ConfigError(f"{name} is required: {what}.")
    check_sft_launch(cfg.sft, cfg.model.device)
    require_backends(cfg.report_to)  # a tracker named but not installed
