"""The trackers a run reports to: names, the checks, and the fan-out to several at once.

A tracker is any object with ``log`` and ``close`` (:class:`Tracker`), opened with the run's
config, which it logs once; one module per backend implements it. Nothing here imports a
backend: the config checks the names when it is read, :func:`require_backends` checks that
each named backend is installed before any work starts, and :func:`open_trackers` imports
only the backends asked for.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from rsft.config import ConfigError

# Each backend, and the pip package that provides it.
BACKENDS: dict[str, str] = {
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
    "mlflow": "mlflow",
}
NAMES = ("none", *BACKENDS)
PROJECT = "rsft"  # the project (experiment) name of trackio, wandb and mlflow by default
TRACKERS_DIR = "trackers"  # <output_dir>/trackers/<backend>

REPORT_TO_HELP = (
    "Experiment trackers to log to: none (the default), tensorboard, trackio, wandb, mlflow; "
    "one name or a list. Logged: the config once, the loss and the acceptance figures per "
    "step, each {unit}'s record. Files go under output_dir/trackers/<backend>: TensorBoard's "
    "event files, wandb's run (offline unless WANDB_MODE is set), mlflow's SQLite store "
    "(unless MLFLOW_TRACKING_URI is set); trackio keeps its own local store ($TRACKIO_DIR, "
    "default ~/.cache/huggingface/trackio), project rsft. None is required: pip install the "
    "backend (or 'rsft[track]' for all four). docs/tracking.md."
)


class TrackerMissingError(ImportError):
    """A tracker is named in ``report_to`` but its package is not installed."""


class Tracker(Protocol):
    """One backend's run, opened with the run's config (logged once): metrics at steps, then
    closed once (``failed``: the run ended with an error)."""

    name: str

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self, failed: bool = False) -> None: ...


def check_report_to(value: str | Sequence[str] | None, option: str = "report_to") -> list[str]:
    """``report_to`` as a list of backend names: one name or a list, ``none`` meaning none,
    each named once. An unknown name is refused naming the option and the choices."""
    names = [value] if isinstance(value, str) else list(value or [])
    out: list[str] = []
    for name in names:
        if name not in NAMES:
            close = difflib.get_close_matches(str(name), NAMES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{option}: {name!r} is not a tracker; choose from {', '.join(NAMES)} (one "
                f"name or a list).{hint}"
            )
        if name != "none" and name not in out:
            out.append(name)
    if out and "none" in names:
        raise ConfigError(
            f"{option}: 'none' cannot be listed with trackers ({', '.join(out)}); remove "
            "'none' or the trackers."
        )
    return out


def require_backends(report_to: Sequence[str]) -> None:
    """Refuse a named tracker whose package is not installed, naming what to install: checked
    before anything loads, so a run never fails at its first log after the work."""
    for name in report_to:
        package = BACKENDS[name]
        if importlib.util.find_spec(package) is None:
            raise TrackerMissingError(
                f"report_to: {name} needs the {package} package, which is not installed: "
                f"pip install {package} (or pip install 'rsft[track]' for every tracker), or "
                f"remove {name} from report_to.",
                name=package,
            )


def run_name_of(output_dir: str | Path, parts: int = 2) -> str:
    """A run's name in the trackers: the last folders of its output_dir (``plain/seed-0``
    in a comparison), so the runs of one project are told apart."""
    tail = Path(output_dir).expanduser().resolve().parts[-parts:]
    return "/".join(tail) or str(output_dir)


def flatten(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted names (``optim.lr``), for backends whose
    parameters are flat."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of ``metrics`` as floats (NaN kept: a NaN loss is worth seeing);
    None, text and lists are left out."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class Trackers:
    """Several trackers as one: each call goes to every tracker. Empty when ``report_to`` is
    (then every call does nothing). A context manager: closed on leaving, marked failed
    where the backend has that when an exception leaves it."""

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        self.trackers = list(trackers)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers]

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log the numeric values of ``metrics`` at ``step`` (others are left out)."""
        values = numbers(metrics)
        if not values:
            return
        for tracker in self.trackers:
            tracker.log(values, int(step))

    def close(self, failed: bool = False) -> None:
        """Close every tracker, even when one fails to (the first error is raised after)."""
        error: BaseException | None = None
        for tracker in self.trackers:
            try:
                tracker.close(failed)
            except Exception as err:  # the others still get closed
                error = error or err
        self.trackers = []
        if error is not None:
            raise error

    def __enter__(self) -> Trackers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(failed=kind is not None)


def open_trackers(
    report_to: Sequence[str],
    output_dir: str | Path,
    run_name: str,
    config: Mapping[str, Any],
) -> Trackers:
    """Open the named trackers for one run and log its config (hyperparameters) once.

    Files go under ``output_dir/trackers/<backend>`` (trackio: its own store); call on the
    main process only. A tracker that fails to open closes the ones opened before it.
    """
    names = check_report_to(report_to)
    require_backends(names)
    folder = Path(output_dir) / TRACKERS_DIR
    trackers = Trackers()
    try:
        for name in names:
            trackers.trackers.append(_open(name, folder / name, run_name, config))
    except BaseException:
        trackers.close(failed=True)
        raise
    return trackers


def _open(name: str, folder: Path, run_name: str, config: Mapping[str, Any]) -> Tracker:
    if name == "tensorboard":
        from rsft.tracking.tensorboard import TensorBoardTracker

        return TensorBoardTracker(folder, config)
    if name == "trackio":
        from rsft.tracking.trackio import TrackioTracker

        return TrackioTracker(run_name, config)
    if name == "wandb":
        from rsft.tracking.wandb import WandbTracker

        return WandbTracker(folder, run_name, config)
    from rsft.tracking.mlflow import MlflowTracker

    return MlflowTracker(folder, run_name, config)
