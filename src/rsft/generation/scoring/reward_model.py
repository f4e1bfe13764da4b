"""A reward model as a verifier: a transformers sequence classifier whose output is r(x, y)."""

from __future__ import annotations

from typing import Any

import torch

from rsft.models.devices import resolve_device
from rsft.models.folders import check_model_folder


def check_all_loaded(path: str, loading: dict[str, Any], config: Any) -> None:
    """Refuse a model whose weights did not all come from its folder.

    transformers builds any weight the folder lacks (the score head of a causal LM loaded
    as a sequence classifier, a head left out of the saved file) from a random init and only
    logs it as MISSING: every reward would then be noise. ``loading`` is transformers' own
    report (``output_loading_info=True``): its missing and mismatched-shape keys.
    """
    names = sorted(loading["missing_keys"]) + sorted(k[0] for k in loading["mismatched_keys"])
    if not names:
        return
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    kinds = ", ".join(getattr(config, "architectures", None) or []) or "no architecture"
    raise ValueError(
        f"reward model {path!r}: its weights {shown} are not in the folder (its config.json "
        f"names {kinds}), so transformers would initialise them at random and every reward "
        "would be noise. verifier.reward_model must be a sequence-classification model "
        "trained as a reward model, with num_labels 1 or 2, saved with save_pretrained "
        "(its score head included); a causal LM folder is not one."
    )


class RewardModelVerifier:
    """A transformers sequence classifier (a local folder) whose output is the reward.

    One output: the reward is that logit. Two outputs: ``logit[1] - logit[0]``, the log-odds of
    label 1 ("good"), so the reward is on the same scale as a one-logit Bradley-Terry model.
    Each pair is formatted with the tokenizer's chat template as ``[user: prompt, assistant:
    completion]`` when it has one (what chat reward models are trained on), else as
    ``prompt + "\\n" + completion``. Scored in eval mode, without gradients, ``batch_size`` at
    a time; references are ignored.
    """

    batched = True

    def __init__(
        self,
        path: str,
        *,
        device: str | None = None,
        batch_size: int = 16,
        max_length: int | None = None,
        dtype: str | None = None,
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = check_model_folder(
            path,
            what="reward model",
            hint="Give the folder of a sequence-classification model saved with "
            "save_pretrained, with its tokenizer.",
        )
        if batch_size < 1:
            raise ValueError(f"reward model batch_size must be >= 1, got {batch_size}.")
        self.path = str(folder)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = torch.device(resolve_device(device or "auto"))
        # A reward model folder runs no code of its own (docs/security.md).
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        extra = {"dtype": getattr(torch, dtype)} if dtype else {}
        self.model, loading = AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=False, output_loading_info=True, **extra
        )
        check_all_loaded(path, loading, self.model.config)
        self.model.to(self.device).eval()
        n_out = self.model.config.num_labels
        if n_out not in (1, 2):
            raise ValueError(
                f"reward model {path!r} has {n_out} outputs; a reward model needs 1 (the "
                "reward) or 2 (bad/good, reward = logit[1] - logit[0])."
            )
        if self.tokenizer.pad_token is None:  # decoder reward models often ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.templated = bool(getattr(self.tokenizer, "chat_template", None))

    def format(self, prompt: str, completion: str) -> str:
        if self.templated:
            messages = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": completion},
            ]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return f"{prompt}\n{completion}"

    @torch.no_grad()
    def __call__(
        self,
        prompts: list[str],
        completions: list[str],
        references: list[str | None] | None = None,
    ) -> list[float]:
        texts = [self.format(p, c) for p, c in zip(prompts, completions)]
        rewards: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=self.max_length is not None,
                max_length=self.max_length,
                add_special_tokens=not self.templated,  # the template already has them
                return_tensors="pt",
            ).to(self.device)
            logits = self.model(**batch).logits.float()
            reward = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
            rewards.extend(reward.cpu().tolist())
        return rewards

    def __repr__(self) -> str:
        return f"RewardModelVerifier({self.path!r})"
