"""Load and validate training data: image folders, tables, saved datasets and tensor files.

``load_split(path, DataConfig(...))`` returns a :class:`Split` whose ``dataset`` and
``collate`` plug into a torch DataLoader; every data problem is a :class:`DataError`
raised at load time, before training starts.
"""

from rsft.data.config import FORMATS, DataConfig, with_feature_columns
from rsft.data.images import default_image_processor
from rsft.data.loading import infer_format, load_split
from rsft.data.split import Collate, Split
from rsft.data.validate import DataError, DataWarning

__all__ = [
    "FORMATS",
    "Collate",
    "DataConfig",
    "DataError",
    "DataWarning",
    "Split",
    "default_image_processor",
    "infer_format",
    "load_split",
    "with_feature_columns",
]
