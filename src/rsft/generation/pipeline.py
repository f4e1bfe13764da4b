"""Rejection-sampling fine-tuning of a language model, one round after another.

One round: generate k completions per training prompt with the current model (the proposal
q), score them (a verifier or reward r), accept by a rule (for ``tilted``, exact rejection
sampling of p ∝ q·exp(r/β)), deduplicate, fine-tune with TRL's SFTTrainer, evaluate on
held-out prompts. Every stage leaves a file behind; a killed run resumes at the first stage
whose file is missing, and generation resumes after its last saved chunk.

Layout of ``output_dir``::

    config.yaml  state.json  results.json  summary.md  pass_at_1.png
    round_0/eval.json                      the base model, before any fine-tuning
    round_r/chunks/                        generation in progress (removed when complete)
    round_r/candidates.jsonl               every completion
    round_r/generations.jsonl              ... with reward, error, accepted, kept flags
    round_r/accepted.jsonl                 what round r fine-tunes on, chat messages (TRL reads it)
    round_r/selection.json                 counts and acceptance statistics
    round_r/sft/model                      the fine-tuned model (round r+1 samples from it)
    round_r/eval.json, eval_generations.jsonl
    round_r/control.jsonl, control/model, control_eval.json   (selection.control: random)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rsft import __version__
from rsft.atomic import atomic_write_jsonl, atomic_write_text, read_jsonl
from rsft.config import check_output_dir, to_dict
from rsft.generation.config import RFTConfig, preflight
from rsft.generation.engines.base import Sampling
from rsft.generation.engines.pool import EnginePool
from rsft.generation.evaluation import held_out_generations, held_out_metrics
from rsft.generation.inputs import with_inputs
from rsft.generation.metrics import distinct_n
from rsft.generation.prompt_checks import warn_long_prompts, warn_overlap
from rsft.generation.prompts import chat_messages, prompts_of
from rsft.generation.results import (
    EngineSummary,
    HeldOutEval,
    RFTResult,
    RoundResult,
    RoundSelection,
)
from rsft.generation.round_selection import choose
from rsft.generation.run_state import prepare_output
from rsft.generation.scoring.answers import answer_extractor
from rsft.generation.scoring.callables import callable_verifier
from rsft.generation.scoring.verifiers import make_verifier, score
from rsft.generation.sft.launch import launch_sft
from rsft.generation.sft.train import sft_train
from rsft.generation.shared_stages import BASE_EVAL, FIRST_CANDIDATES, Stage, borrow
from rsft.generation.training_set import (
    chat_records,
    round_records,
    with_references,
    write_references,
)
from rsft.models.folders import check_model_folder
from rsft.output_lock import output_lock
from rsft.progress import say, says_lines
from rsft.seeding import stream_seed
from rsft.tracking import held_out_metrics_of, open_trackers, rft_round_metrics, run_name_of


class RFTPipeline:
    """Rounds of generate → score → accept → deduplicate → fine-tune → evaluate.

    Everything that can be checked is checked here, before a model is loaded: the config,
    the prompt files and their columns, the model folder, the verifier.

    ``model``, ``train``, ``eval`` and ``reward`` stand in for ``model.path``, ``data.train``,
    ``data.eval`` and the verifier: paths as a config names them, or objects (a
    transformers model with its ``tokenizer``, a ``datasets.Dataset`` or a list of rows, a
    reward callable in rsft's or TRL's signature); see :mod:`rsft.generation.inputs`.
    ``donors``: other run folders whose base evaluation and round-1 candidates this run
    copies where their inputs were the same (:mod:`rsft.generation.shared_stages`).
    """

    def __init__(
        self,
        cfg: RFTConfig | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        train: Any = None,
        eval: Any = None,
        reward: Callable | None = None,
        donors: Sequence[Path] = (),
    ) -> None:
        cfg = with_inputs(
            cfg or RFTConfig(),
            model=model,
            tokenizer=tokenizer,
            train=train,
            eval=eval,
            reward=reward,
        )
        self.cfg = cfg
        preflight(cfg)
        check_output_dir(cfg.output_dir)
        self.base = check_model_folder(
            cfg.model.path,
            hint="`rsft prepare arithmetic` makes the embedded default.",
            trust_remote_code=cfg.model.trust_remote_code,
        )
        d = cfg.data
        self.train_prompts = prompts_of(d, "train", solutions=cfg.train_on != "accepted")
        self.eval_prompts = prompts_of(d, "eval")
        warn_overlap(self.train_prompts, self.eval_prompts)
        v = cfg.verifier
        self.verifier_timeout = v.timeout  # None where a reward callable scores in threads
        self.answers = None  # how the verifier reads an answer (maj@k), when it does
        if reward is not None:
            self.verifier, self.verifier_timeout = callable_verifier(
                reward, d.answer_column, v.timeout
            )
        else:
            self.verifier = make_verifier(v.kind, **v.options())
            self.answers = answer_extractor(v.kind, v.options())
        self.out = Path(cfg.output_dir)
        self.donors = [Path(d) for d in donors]
        self.timings: dict[str, float] = {}
        self.engines = EnginePool(cfg, self.base, self.out / "engines")

    # --- bookkeeping -------------------------------------------------------------------

    def _prepare_output(self) -> None:
        self.identity = prepare_output(self.cfg, self.out, self._say)

    def _borrow(self, stage: Stage) -> None:
        """Copy ``stage`` from a donor run that computed it from the same inputs."""
        donor = borrow(stage, self.out, self.donors, *self.identity)
        if donor is not None:
            self._say(f"{stage.name}: the same as in {donor}, copied from there")

    def _say(self, message: str) -> None:
        """A line for the log (per round), unless ``progress: quiet``."""
        if says_lines(self.cfg.progress):
            say(message)

    def _timed(self, stage: str, start: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    # --- stages ------------------------------------------------------------------------

    def generate(self, rnd: int, model: Path) -> list[dict[str, Any]]:
        """k completions per training prompt, saved chunk by chunk."""
        rdir = self.out / f"round_{rnd}"
        final = rdir / "candidates.jsonl"
        if final.is_file():
            return read_jsonl(final)
        g, p = self.cfg.generation, self.train_prompts
        chunks = rdir / "chunks"
        chunks.mkdir(parents=True, exist_ok=True)
        starts = range(0, len(p), g.chunk_prompts)
        todo = [c for c, _ in enumerate(starts) if not (chunks / f"{c:05d}.jsonl").is_file()]
        if todo:
            t0 = time.perf_counter()
            gen = self.engines.generator(model)
            system = self.cfg.data.system_prompt

            def convs(c: int) -> list:
                lo, hi = starts[c], min(starts[c] + g.chunk_prompts, len(p))
                return [chat_messages(t, system) for t in p.texts[lo:hi]]

            def sampling(i: int) -> Sampling:
                seed = stream_seed(self.cfg.seed, "generate", rnd, todo[i])
                return Sampling(g.k, g.temperature, g.top_p, g.max_new_tokens, seed=seed)

            def save(i: int, outs: list[list[str]]) -> None:
                c = todo[i]
                lo = starts[c]
                rows = [
                    {
                        "prompt_id": p.ids[lo + n],
                        "prompt": p.texts[lo + n],
                        "reference": p.references[lo + n],
                        "sample": j,
                        "completion": text,
                    }
                    for n, texts in enumerate(outs)
                    for j, text in enumerate(texts)
                ]
                atomic_write_jsonl(chunks / f"{c:05d}.jsonl", rows)

            gen.generate_chunks(
                [convs(c) for c in todo],
                sampling,
                save,
                progress=self.cfg.progress is True,
                desc=f"round {rnd}: generate",
            )
            self.generated_tokens = getattr(self, "generated_tokens", 0) + gen.generated_tokens
            for line in getattr(gen, "failures", []):
                self._say(f"round {rnd}: {line}")
            gen.close()
            self._timed("generate", t0)
        rows = [r for c in range(len(starts)) for r in read_jsonl(chunks / f"{c:05d}.jsonl")]
        atomic_write_jsonl(final, rows)
        shutil.rmtree(chunks)
        return rows

    def score_and_select(self, rnd: int, rows: list[dict[str, Any]]) -> RoundSelection:
        """Score, accept, deduplicate; write generations, accepted set and statistics."""
        rdir = self.out / f"round_{rnd}"
        stats_path = rdir / "selection.json"
        if stats_path.is_file():
            return RoundSelection.read(stats_path)
        t0 = time.perf_counter()
        s, v = self.cfg.selection, self.cfg.verifier
        result = score(
            self.verifier,
            [r["prompt"] for r in rows],
            [r["completion"] for r in rows],
            [r["reference"] for r in rows],
            workers=v.workers,
            progress=self.cfg.progress is True,
            timeout=self.verifier_timeout,
        )
        self._timed("score", t0)
        if result.n_failed:
            self._say(f"round {rnd}: {result.summary()}")
        t0 = time.perf_counter()
        groups = [r["prompt_id"] for r in rows]
        texts = [r["completion"] for r in rows]
        choice = choose(self.cfg, rnd, result.rewards, groups, texts)
        for r, reward, err, acc, keep in zip(
            rows, result.rewards, result.errors, choice.accepted, choice.kept
        ):
            r.update(reward=reward, error=err, accepted=acc, kept=keep)
        kept = [r for r in rows if r["kept"]]
        stats = RoundSelection(
            candidates=len(rows),
            prompts=len(set(groups)),
            failed=result.n_failed,
            timeouts=result.timeouts,
            failures=result.summary(),
            accepted=sum(choice.accepted),
            kept=len(kept),
            prompts_kept=len({r["prompt_id"] for r in kept}),
            distinct=distinct_n(texts, self.cfg.eval.distinct_n),
            rule=choice.rule_stats,
        )
        system = self.cfg.data.system_prompt
        if choice.control is not None:
            for r, c in zip(rows, choice.control):
                r["control"] = c
            control = chat_records([r for r in rows if r["control"]], system)
            atomic_write_jsonl(rdir / "control.jsonl", control)
            stats.control = sum(choice.control)
        if self.cfg.train_on == "accepted+reference":
            kept = with_references(kept, self.train_prompts, s.dedup)
        atomic_write_jsonl(rdir / "generations.jsonl", rows)
        atomic_write_jsonl(rdir / "accepted.jsonl", chat_records(kept, system))
        stats.write(stats_path)
        self._timed("select", t0)
        return stats

    def train(self, rnd: int, start: Path, data_file: str, out: Path) -> Path:
        """Fine-tune ``start`` on this round's (or every round's) accepted records."""
        rounds = range(1, rnd + 1) if self.cfg.data_mode == "accumulate" else [rnd]
        records = round_records(self.out, rounds, data_file, self.train_prompts)
        self.engines.release()  # the trainer gets the memory; a new model needs new engines
        t0 = time.perf_counter()
        options = {
            "seed": stream_seed(self.cfg.seed, "sft", rnd),
            "dtype": self.cfg.model.dtype,
            "device": self.cfg.model.device,
            "progress": self.cfg.progress,
            "trust_remote_code": self.cfg.model.trust_remote_code,
            "stage": f"round {rnd}'s fine-tuning",  # how a divergence error starts
            "report_to": self.cfg.report_to,
        }
        if self.cfg.sft.launched:  # sft.processes > 1 or an accelerate config: a child command
            files = [self.out / f"round_{r}" / data_file for r in rounds]
            model = launch_sft(start, files, out, self.cfg.sft, **options)
        else:
            model = sft_train(start, records, out, self.cfg.sft, **options)
        self._timed("train", t0)
        return model

    def evaluate(self, model: Path, out: Path, name: str = "eval") -> HeldOutEval:
        """Greedy pass@1, sampled pass@k and distinct-n on the held-out prompts."""
        path = out / f"{name}.json"
        if path.is_file():
            return HeldOutEval.read(path)
        t0 = time.perf_counter()
        gen = self.engines.generator(model, self.cfg.eval.batch_size)
        greedy, sampled = held_out_generations(
            gen,
            self.cfg,
            self.eval_prompts,
            stream_seed(self.cfg.seed, "eval"),
            self.cfg.progress is True,
        )
        gen.close()
        self._timed("evaluate", t0)
        metrics = held_out_metrics(
            self.cfg,
            self.eval_prompts,
            self.verifier,
            greedy,
            sampled,
            out / name,
            self._say,
            timeout=self.verifier_timeout,
            answers=self.answers,
        )
        metrics.write(path)
        return metrics

    # --- the run ------------------------------------------------------------------------

    def run(self) -> RFTResult:
        """Every round, with output_dir locked (:mod:`rsft.output_lock`); the engines rsft
        started are stopped however the run ends."""
        config = to_dict(self.cfg)
        with (
            output_lock(self.out, "rsft rft"),
            open_trackers(
                self.cfg.report_to, self.out, run_name_of(self.out), config
            ) as self.trackers,
        ):
            try:
                return self._run()
            finally:
                self.engines.close()

    def _run(self) -> RFTResult:
        cfg = self.cfg
        self._prepare_output()
        warn_long_prompts(cfg, self.train_prompts, self.eval_prompts, self.engines.vllm)
        rows = []
        fresh = not (self.out / "round_0" / "eval.json").is_file()  # a resumed run logs once
        self._borrow(BASE_EVAL)
        before = self.evaluate(self.base, self.out / "round_0")
        if fresh:
            self.trackers.log(held_out_metrics_of(before, "after"), step=0)
        self._say(f"round 0 (the base model): {before.line()}")
        current = self.base
        for rnd in range(1, cfg.rounds + 1):
            rdir = self.out / f"round_{rnd}"
            if cfg.train_on == "reference":  # plain fine-tuning: nothing to generate
                stats = write_references(rdir, self.train_prompts, cfg)
            else:
                if rnd == 1:
                    self._borrow(FIRST_CANDIDATES)
                stats = self.score_and_select(rnd, self.generate(rnd, current))
            start = self.base if cfg.start_from == "base" else current
            control_eval = None
            if cfg.selection.control == "random":  # first: the model's engine then serves on
                ctrl = self.train(rnd, start, "control.jsonl", rdir / "control")
                control_eval = self.evaluate(ctrl, rdir, "control_eval")
            model = self.train(rnd, start, "accepted.jsonl", rdir / "sft")
            fresh = not (rdir / "eval.json").is_file()
            after = self.evaluate(model, rdir)
            rows.append(RoundResult(rnd, stats, before, after, control_eval))
            if fresh:
                self.trackers.log(rft_round_metrics(rows[-1]), step=rnd)
            self._say(f"round {rnd}: {stats.line()}; {after.line()}")
            before, current = after, model
        if self.engines.starts:
            self.timings["engine_start"] = sum(self.engines.starts)
        if self.engines.adapter_loads:
            self.timings["adapter_load"] = sum(self.engines.adapter_loads)
        results = RFTResult(
            rsft_version=__version__,
            base_model=str(self.base),
            base_eval=HeldOutEval.read(self.out / "round_0" / "eval.json"),
            rounds=rows,
            final_model=str(current),
            timings=self.timings,
            engine=EngineSummary.of(self.engines),
        )
        results.write(self.out / "results.json")
        from rsft.generation.report import format_rounds
        from rsft.plots.rounds import plot_rounds

        t0 = time.perf_counter()
        table = format_rounds(results)
        atomic_write_text(self.out / "summary.md", table + "\n")
        plot_rounds(results, self.out / "pass_at_1.png")
        self._timed("report", t0)  # after results.json: the returned timings have it
        results.table = table
        return results
