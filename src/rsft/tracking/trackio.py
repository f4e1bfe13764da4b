"""trackio: a local, offline store (SQLite), shown by ``trackio show --project rsft``.

trackio keeps every project in one folder of its own, ``$TRACKIO_DIR`` (default
``~/.cache/huggingface/trackio``), read when trackio is first imported; rsft logs to the
project ``rsft``, one run per output_dir. A rerun of the same output_dir (a resumed run)
continues its trackio run. Nothing goes to a Space unless the user's own trackio settings
(``TRACKIO_SPACE_ID``) say so.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import Any

from rsft.tracking.base import PROJECT


class TrackioTracker:
    name = "trackio"

    def __init__(self, run_name: str, config: Mapping[str, Any]) -> None:
        import trackio

        self.trackio = trackio
        # trackio prints where it logs; to stderr, so that stdout stays rsft's own output.
        with contextlib.redirect_stdout(sys.stderr):
            self.run = trackio.init(
                project=PROJECT,
                name=run_name,
                config=dict(config),
                resume="allow",
                embed=False,
                auto_log_cpu=False,  # no sampling thread beside the run: it logs its own
                auto_log_gpu=False,
            )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self, failed: bool = False) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            if self.trackio.context_vars.current_run.get() is self.run:
                self.trackio.finish()  # trackio's current run: finished and no longer current
            else:  # another run became current since (trackio holds one), this one still logs
                self.run.finish()
