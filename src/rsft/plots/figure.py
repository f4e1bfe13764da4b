"""How every rsft plot makes and saves a figure: matplotlib's object API on an Agg canvas.

No pyplot and no ``matplotlib.use``: pyplot keeps global state (the backend, the list of open
figures) that belongs to whoever imported rsft, e.g. a notebook with an inline or widget
backend. A ``Figure`` drawn on its own Agg canvas touches none of it and needs no closing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsft.atomic import atomic_target

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure"]


def new_figure(**kwargs: Any) -> Figure:
    """A ``Figure(**kwargs)`` with its own Agg canvas (matplotlib loads on the first plot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save ``fig`` atomically in the format its suffix names (PNG without one); returns the path.

    Atomic like every result rsft writes: a run killed mid-save leaves no truncated image.
    """
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    with atomic_target(target) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return target
