"""The configuration layer: every bad option is a ConfigError that names it, raised when the
config is read (``from_dict``), before any model or data loads."""

from __future__ import annotations

import pathlib

import pytest

from rsft.config import ConfigError, from_dict, load_yaml
from rsft.data import DataConfig
from rsft.training import TrainConfig

# The smallest train config that parses: nothing is loaded until FineTuner runs.
MINIMAL = {"model": {"path": "pkg.module:Model"}, "data": {"train": "train.csv"}}


def train_config(**sections) -> dict:
    """MINIMAL with ``sections`` merged in (one level deep)."""
    out = {k: dict(v) for k, v in MINIMAL.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def test_the_minimal_config_parses():
    assert from_dict(TrainConfig, train_config()).model.path == "pkg.module:Model"


# ------------------------------------------------------------------ ConfigError, named


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"format": "xlsx"}, r"data.format 'xlsx' is not supported"),
        ({"resize": 0}, r"data.resize must be a positive integer, got 0"),
        ({"mean": [0.5, 0.5]}, r"data.mean must be three finite numbers"),
        ({"std": [0.2, 0.0, 0.2]}, r"data.std must be positive"),
        ({"feature_columns": []}, r"data.feature_columns is an empty list"),
        ({"feature_columns": ["x"], "text_column": "t"}, r"data.feature_columns and data.text"),
        ({"exclude_columns": ["id"]}, r"data.exclude_columns applies to feature_columns: all"),
    ],
)
def test_data_options_raise_config_error_naming_the_option(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, train_config(data=data))
    with pytest.raises(ConfigError, match=match):  # the Python API says the same
        DataConfig(**data)


def test_data_mean_given_as_one_number_in_python():
    with pytest.raises(ConfigError, match=r"data.mean must be three finite numbers .* got 0.5"):
        DataConfig(mean=0.5)


@pytest.mark.parametrize(
    ("section", "match"),
    [
        (
            {"rejection": {"envelope": {"policy": "quantile", "quantile": 1.5}}},
            r"rejection.envelope.quantile must be in \(0, 1\], got 1.5",
        ),
        (
            {"rejection": {"envelope": {"policy": "fixed"}}},
            r"rejection.envelope.value: policy 'fixed' needs a positive finite value",
        ),
        (
            {"rejection": {"envelope": {"policy": "fixed", "value": -2}}},
            r"rejection.envelope.value: .* got -2.0",
        ),
        (
            {"optim": {"name": "metropolis"}, "param_level": {"temperature": 0}},
            r"param_level.temperature must be > 0, got 0.0. exp\(-L/T\) needs T > 0",
        ),
        (
            {
                "optim": {"name": "metropolis"},
                "param_level": {"temperature_schedule": "linear", "temperature_end": -1},
            },
            r"param_level.temperature_end must be > 0, got -1.0",
        ),
        (
            {"optim": {"name": "metropolis"}, "param_level": {"target_acceptance": 1.5}},
            r"param_level.target_acceptance must be in \(0, 1\), got 1.5",
        ),
        (
            {"optim": {"name": "metropolis"}, "param_level": {"adapt_every": 0}},
            r"param_level.adapt_every must be >= 1, got 0",
        ),
        (
            {"optim": {"name": "metropolis"}, "param_level": {"adapt_gain": 0}},
            r"param_level.adapt_gain must be > 0, got 0.0",
        ),
    ],
)
def test_rule_and_schedule_options_name_the_option(section, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, train_config(**section))


def test_from_dict_of_something_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match=r"TrainConfig: expected a mapping of options"):
        from_dict(TrainConfig, ["model.path=x"])  # type: ignore[arg-type]


def test_a_config_file_that_is_not_text(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00model: {}")
    with pytest.raises(ConfigError, match=r"binary.yaml: not a text file in UTF-8"):
        load_yaml(path)


def test_a_config_file_that_cannot_be_read(tmp_path, monkeypatch):
    path = tmp_path / "locked.yaml"
    path.write_text("epochs: 1\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "open", refuse)
    with pytest.raises(ConfigError, match=r"locked.yaml' cannot be read: Permission denied"):
        load_yaml(path)
