"""The embedded default task: digits with a real source -> target shift, and a pretrained model.

``prepare_digits`` writes the data splits (see :mod:`rsft.tasks.digits`) and pretrains
``DigitsNet`` on the source domain with rsft's own training loop, caching both: the
"pretrained model" that fine-tuning starts from, built from data that ships offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rsft import __version__
from rsft.atomic import atomic_write_text
from rsft.portable import kernel_settings
from rsft.progress import Progress, say, says_lines
from rsft.tasks.digits import build_digits_task

PRETRAIN = {
    "model": {"path": "rsft.tasks.digits:DigitsNet", "freeze": "none"},
    "optim": {"name": "adam", "lr": 0.003},
    "epochs": 15,
    "batch_size": 32,
    "resume": "never",
}


def prepare_digits(
    out: str | Path, seed: int = 0, force: bool = False, progress: Progress = "quiet"
) -> dict[str, str]:
    """Build (or reuse) the splits and the pretrained model under ``out``; return their paths.

    ``progress`` is the pretraining run's ``progress`` option (``rsft prepare`` passes true).
    """
    from rsft.config import from_dict
    from rsft.training import FineTuner, TrainConfig

    out = Path(out)
    manifest = out / "manifest.json"
    if manifest.is_file() and not force:
        saved = json.loads(manifest.read_text())
        # Pretraining's bits depend on the kernels (rsft.portable): rebuild under other ones.
        fresh = (
            saved.get("seed") == seed
            and saved.get("rsft_version") == __version__
            and saved.get("kernels") == kernel_settings()
        )
        if fresh and Path(saved["paths"]["pretrained"]).is_dir():
            return saved["paths"]
    paths = {k: str(v) for k, v in build_digits_task(out, seed=seed).items()}
    run_dir = out / "pretrain_run"
    if says_lines(progress):
        say(f"pretraining DigitsNet on the source domain ({PRETRAIN['epochs']} epochs)")
    cfg = from_dict(
        TrainConfig,
        {
            **PRETRAIN,
            "progress": progress,
            "data": {"train": paths["pretrain"], "feature_columns": ["pixels"]},
            "seed": seed,
            "output_dir": str(run_dir),
        },
    )
    result = FineTuner(cfg).train()
    pretrained = out / "pretrained"
    shutil.rmtree(pretrained, ignore_errors=True)
    shutil.copytree(run_dir / "model", pretrained)
    shutil.rmtree(run_dir, ignore_errors=True)
    paths["pretrained"] = str(pretrained)
    atomic_write_text(
        manifest,
        json.dumps(
            {
                "seed": seed,
                "rsft_version": __version__,
                "kernels": kernel_settings(),
                "paths": paths,
                "pretrain_train_loss": result["history"][-1]["train_loss"],
            },
            indent=2,
        ),
    )
    return paths
