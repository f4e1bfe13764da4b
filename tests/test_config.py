"""The configuration layer: every bad option is a ConfigError that names it, raised when the
config is read (``from_dict``), before any model or data loads."""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re
import typing
from pathlib import Path

import pytest
import yaml

import rsft
from rsft.cli.main import main
from rsft.compare.runner import CompareConfig, build_runs
from rsft.config import ConfigError, from_dict, load_yaml, options_given, replace, to_dict
from rsft.data import DataConfig
from rsft.data_level.config import RejectionConfig
from rsft.generation.config import RFTConfig
from rsft.training import TrainConfig
from rsft.training.config import OptimConfig, ParamLevelConfig

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


# ------------------------------------------------------------------ mapping-valued options


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ({"a": "x", "b": 0.5}, r"rejection.balance_target.a: expected a number, got 'x'"),
        ({"a": -0.5, "b": 1.5}, r"rejection.balance_target.a must be >= 0, got -0.5. .*drops"),
        ({"a": float("nan"), "b": 1.0}, r"rejection.balance_target.a: expected a finite number"),
        ({"a": float("inf")}, r"rejection.balance_target.a: expected a finite number"),
        ({"a": 0.5, "b": 0.6}, r"rejection.balance_target: the shares sum to 1.1, not 1"),
        ({"a": 0.0, "b": 0.0}, r"rejection.balance_target: the shares sum to 0, not 1"),
        ({}, r"rejection.balance_target: expected groups and shares"),
        ({None: 1.0}, r"rejection.balance_target: the key None must be str \| int, not NoneType"),
        ({1.5: 1.0}, r"the key 1.5 must be str \| int, not float. Quote it"),
        ([0.5, 0.5], r"rejection.balance_target: expected a mapping, got \[0.5, 0.5\]"),
    ],
)
def test_bad_balance_target_is_refused_when_the_config_is_read(target, match):
    cfg = train_config(rejection={"weights": "balance", "balance_target": target})
    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, cfg)


def test_balance_target_date_key_from_yaml_says_to_quote_it():
    dates = yaml.safe_load("{2024-01-01: 0.5, 2024-01-02: 0.5}")  # YAML reads dates as dates
    cfg = train_config(rejection={"weights": "balance", "balance_target": dates})
    with pytest.raises(ConfigError, match=r"key datetime.date\(2024, 1, 1\) .* not date. Quote"):
        from_dict(TrainConfig, cfg)


@pytest.mark.parametrize(
    "target",
    [
        {0: 0.2, 1: 0.3, 2: 0.5},  # integer labels stay integers: 0 and '0' are other groups
        {"cat": 0.75, "dog": 0.25, "bird": 0.0},
        {True: 0.5, False: 0.5},  # a true/false group column
        {"a": 0.333, "b": 0.333, "c": 0.333},  # balance_weights' own tolerance
    ],
)
def test_good_balance_targets_pass_unchanged(target):
    cfg = from_dict(
        TrainConfig, train_config(rejection={"weights": "balance", "balance_target": target})
    )
    assert cfg.rejection.balance_target == target
    assert [type(k) for k in cfg.rejection.balance_target] == [type(k) for k in target]


def test_balance_target_built_in_python_is_checked_too():
    with pytest.raises(ConfigError, match=r"rejection.balance_target.a: expected a number"):
        RejectionConfig(weights="balance", balance_target={"a": "half", "b": 0.5})
    with pytest.raises(ConfigError, match=r"rejection.balance_target: expected groups and shares"):
        RejectionConfig(weights="balance", balance_target=[("a", 1.0)])  # type: ignore[arg-type]


def test_model_kwargs_keys_must_be_strings():
    cfg = train_config(model={"kwargs": {1: 8}})
    with pytest.raises(ConfigError, match=r"model.kwargs: the key 1 must be str, not int"):
        from_dict(TrainConfig, cfg)


@pytest.mark.parametrize(
    ("compare", "match"),
    [
        ({"base": {1: {}}, "methods": {"plain": {}}}, r"base: the key 1 must be str, not int"),
        ({"methods": {2: {}}}, r"methods: the key 2 must be str, not int"),
        ({"methods": {"a/b": {}}}, r"methods: 'a/b' cannot name a method: .* folder name"),
        ({"methods": {"..": {}}}, r"methods: '..' cannot name a method"),
        ({"methods": {"": {}}}, r"methods: '' cannot name a method"),
        ({"methods": {"plain": [1]}}, r"methods.plain must be a mapping of overrides"),
    ],
)
def test_bad_compare_mappings(compare, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(CompareConfig, compare)


def test_the_cli_refuses_a_bad_share_before_reading_any_data(tmp_path, capsys):
    missing = str(tmp_path / "missing.csv")
    args = [f"data.train={missing}", "model.path=pkg.module:Model", f"output_dir={tmp_path}/run"]
    args += ["rejection.weights=balance", "rejection.balance_target={a: 2}"]
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert "rejection.balance_target: the shares sum to 2, not 1" in err
    assert "missing.csv" not in err


# ------------------------------------------------------------------ options that do not apply


@pytest.mark.parametrize(
    ("over", "match"),
    [
        # each option below is set to its default value: set, so refused all the same
        ({"optim": {"name": "zo_sgd"}, "param_level": {"temperature": 1.0}}, "temperature"),
        ({"optim": {"name": "zo_sgd"}, "param_level": {"restore": "exact"}}, "restore"),
        ({"optim": {"name": "sgd"}, "param_level": {"sigma": 1e-3}}, "param_level.sigma"),
        ({"optim": {"name": "adam"}, "param_level": {"patterns": []}}, "param_level.patterns"),
        ({"optim": {"name": "metropolis", "weight_decay": 0.0}}, "optim.weight_decay"),
        ({"optim": {"name": "mala", "nesterov": False}}, "optim.nesterov"),
        ({"optim": {"name": "zo_sgd", "max_grad_norm": None}}, "optim.max_grad_norm"),
        ({"optim": {"name": "zo_sgd", "warmup_steps": 0}}, "optim.warmup_steps"),
    ],
)
def test_an_option_set_to_its_default_still_does_not_apply(over, match):
    with pytest.raises(ConfigError, match=rf"{match}.* does not apply"):
        from_dict(TrainConfig, train_config(**over))


@pytest.mark.parametrize(
    "over",
    [
        {"optim": {"name": "zo_sgd"}, "param_level": {"sigma": 1e-3, "patterns": ["*"]}},
        {"optim": {"name": "metropolis"}, "param_level": {"temperature": 1.0, "restore": "exact"}},
        {"optim": {"name": "sgd", "weight_decay": 0.0, "nesterov": False}},
        {"optim": {"name": "metropolis", "lr": 0.01, "momentum": 0.9}, "param_level": {}},
    ],
)
def test_options_that_apply_pass_whatever_their_value(over):
    from_dict(TrainConfig, train_config(**over))


def test_the_cli_refuses_an_option_set_to_its_default_that_does_not_apply(capsys):
    args = ["model.path=pkg.module:Model", "data.train=t.csv", "optim.name=zo_sgd"]
    assert main(["train", *args, "param_level.temperature_schedule=constant"]) == 2
    err = capsys.readouterr().err
    assert "param_level.temperature_schedule does not apply to zo_sgd" in err


def test_compare_base_option_that_does_not_apply_to_one_method():
    cfg = from_dict(
        CompareConfig,
        {
            "base": train_config(param_level={"temperature": 1.0}),
            "methods": {"metropolis": {"optim": {"name": "metropolis"}}, "zo": {}},
            "seeds": [0],
        },
    )
    with pytest.raises(ConfigError, match=r"method 'zo': param_level.temperature does not"):
        build_runs(cfg)


def test_options_given_records_what_from_dict_was_given():
    cfg = train_config(optim={"name": "zo_sgd"}, param_level={"sigma": 1e-3}, epochs=3)
    cfg = from_dict(TrainConfig, cfg)
    assert options_given(cfg.param_level) == {"sigma"}  # its default value, given
    assert options_given(cfg.rejection) == set()  # a section not in the mapping
    assert options_given(cfg) == {"model", "data", "optim", "param_level", "epochs"}
    # The record is no option: it is not saved (results.json, resume) and == ignores it.
    assert "_rsft_options_given" not in str(to_dict(cfg))
    assert cfg.param_level == ParamLevelConfig()


def test_options_given_in_python_are_its_keyword_arguments_as_from_yaml():
    assert options_given(ParamLevelConfig(sigma=0.5, temperature=1.0)) == {"sigma", "temperature"}
    assert options_given(ParamLevelConfig()) == set()
    # dataclasses.replace passes every option: the values that differ count; replace() keeps
    # the record of the section it rebuilds.
    built = ParamLevelConfig(temperature=1.0)
    assert options_given(dataclasses.replace(built, sigma=0.5)) == {"sigma"}
    assert options_given(replace(built, sigma=0.5)) == {"sigma", "temperature"}


@pytest.mark.parametrize(
    ("over", "named"),
    [
        ({"optim": {"name": "zo_sgd"}, "param_level": {"restore": "exact"}}, "restore"),
        ({"optim": {"name": "metropolis", "weight_decay": 0.0}}, "optim.weight_decay"),
    ],
)
def test_an_option_that_does_not_apply_is_refused_from_yaml_and_from_python(over, named):
    with pytest.raises(ConfigError, match=rf"{named}.* does not apply"):
        from_dict(TrainConfig, train_config(**over))
    sections = {"optim": OptimConfig, "param_level": ParamLevelConfig}
    built = {k: sections[k](**v) for k, v in over.items()}
    plain = from_dict(TrainConfig, train_config())
    with pytest.raises(ConfigError, match=rf"{named}.* does not apply"):
        TrainConfig(model=plain.model, data=plain.data, **built)


# ------------------------------------------------------------------ user-facing text

# Requirement tags of rsft's design notes ("S3.3", "seed 001") mean nothing to a user.
TAG = re.compile(r"\bS\d+\.\d+\b|\b[Ss]eed 0\d\d\b")
SRC = Path(rsft.__file__).parent


def _config_classes() -> list[type]:
    """Every config section reachable from the three commands' configs, nested ones included."""
    found, todo = [], [TrainConfig, CompareConfig, RFTConfig]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.append(cls)
        hints = typing.get_type_hints(cls)
        todo += [
            hints[f.name]
            for f in dataclasses.fields(cls)
            if dataclasses.is_dataclass(hints[f.name])
        ]
    return found


def test_help_texts_hold_no_requirement_tags():
    classes = _config_classes()
    assert len(classes) >= 15
    for cls in classes:
        for f in dataclasses.fields(cls):
            text = f.metadata.get("help", "")
            assert text, f"{cls.__name__}.{f.name} has no help text"
            assert not TAG.search(text), f"{cls.__name__}.{f.name}: {text}"
        assert not TAG.search(cls.__doc__ or ""), cls.__name__


@pytest.mark.parametrize("command", ["train", "compare", "rft", "prepare"])
def test_command_help_holds_no_requirement_tags(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert command == "prepare" or "config options:" in text
    assert not TAG.search(text), TAG.search(text)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module and its classes and functions."""
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                ids.add(id(body[0].value))
    return ids


def test_no_message_or_help_string_in_the_source_holds_a_requirement_tag():
    """Every string literal but docstrings: help texts, error and warning messages, output."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
            ):
                if TAG.search(node.value):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_shipped_text_holds_no_requirement_tags():
    """Docstrings, README, docs, configs and examples: what a user reads, in words."""
    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md"]
    for folder, patterns in (
        ("src", ["*.py"]),
        ("docs", ["*.md"]),
        ("configs", ["*.yaml"]),
        ("examples", ["*.py", "*.md"]),
        ("benchmarks", ["*.py"]),
    ):
        files += [f for p in patterns for f in (root / folder).rglob(p)]
    assert len(files) > 100
    tagged = [
        f"{f.relative_to(root)}:{i}: {line.strip()}"
        for f in files
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if TAG.search(line)
    ]
    assert not tagged, "\n".join(tagged)
