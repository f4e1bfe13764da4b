"""Every declared constraint is checked, with one message naming the option, whether the
config comes from YAML (a mapping), from Python (the section's constructor) or as shown by
``--help``: each option is fed an invalid value built from its own declaration."""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin

import pytest

from rsft.cli.main import main
from rsft.compare.runner import CompareConfig
from rsft.config import ConfigError, from_dict
from rsft.generation.config import RFTConfig
from rsft.training.config import TrainConfig

MINIMAL: dict[type, dict[str, Any]] = {
    RFTConfig: {"model": {"path": "m"}, "data": {"train": "t.jsonl", "eval": "e.jsonl"}},
    TrainConfig: {"model": {"path": "rsft.tasks.mlp:MLP"}, "data": {"train": "t.csv"}},
    CompareConfig: {"methods": {"plain": {}}},
}


def _options(root: type) -> list[tuple[str, type, dataclasses.Field]]:
    """(dotted path of the section, its class, the field) for every declared option."""
    out = []

    def walk(cls: type, path: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{path}{f.name}.")
            elif "bounds" in f.metadata or "only_with" in f.metadata:
                out.append((path, cls, f))

    walk(root, "")
    return out


def _outside(bounds: dict[str, float], integer: bool) -> Any:
    """A value just outside the declared range."""
    step = 1 if integer else 0.5
    if "gt" in bounds:
        return bounds["gt"]
    if "ge" in bounds:
        return bounds["ge"] - step
    if "lt" in bounds:
        return bounds["lt"]
    return bounds["le"] + step


def _set(config: dict, path: str, name: str, value: Any) -> dict:
    out = copy.deepcopy(config)
    node = out
    for part in path.strip(".").split(".") if path else []:
        node = node.setdefault(part, {})
    node[name] = value
    return out


def _section_kwargs(config: dict, path: str) -> dict:
    node = config
    for part in path.strip(".").split(".") if path else []:
        node = node.get(part, {})
    return copy.deepcopy(node)


def _build_both(root: type, path: str, cls: type, config: dict, name: str) -> list[str]:
    """The messages of building ``config`` from a mapping and the section in Python."""
    messages = []
    with pytest.raises(ConfigError) as from_yaml:
        from_dict(root, config)
    messages.append(str(from_yaml.value))
    with pytest.raises(ConfigError) as from_python:
        cls(**_section_kwargs(config, path))
    messages.append(str(from_python.value))
    return messages


CASES = [(root, *option) for root in MINIMAL for option in _options(root)]
BOUNDED = [c for c in CASES if "bounds" in c[3].metadata]
ONLY_WITH = [c for c in CASES if "only_with" in c[3].metadata]


def _id(case: tuple) -> str:
    return f"{case[0].__name__}:{case[1]}{case[3].name}"


def test_the_tables_cover_the_options_the_issue_names():
    names = {f"{path}{f.name}" for _, path, _, f in CASES}
    assert {"generation.k", "selection.beta", "sft.processes", "optim.lr"} <= names
    assert {"verifier.pattern", "rejection.beta", "param_level.sigma"} <= names
    assert len(BOUNDED) >= 40 and len(ONLY_WITH) >= 10


@pytest.mark.parametrize("case", BOUNDED, ids=_id)
def test_a_value_outside_its_declared_range_is_refused_naming_the_option(case):
    root, path, cls, f = case
    hint = typing.get_type_hints(cls)[f.name]
    integer = int in (get_args(hint) or (hint,))
    bad = _outside(f.metadata["bounds"], integer)
    config = _set(MINIMAL[root], path, f.name, bad)
    for message in _build_both(root, path, cls, config, f.name):
        assert message.startswith(f"{path}{f.name} must be "), message


def _other_value(f: dataclasses.Field, hint: Any) -> Any:
    """A valid value other than the default, to set an option that may not apply."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if get_origin(hint) is Literal:
        return next(v for v in get_args(hint) if v != default)
    options = [a for a in (get_args(hint) or (hint,)) if a is not type(None)]
    literal = next((a for a in options if get_origin(a) is Literal), None)
    if literal is not None:
        return next(v for v in get_args(literal) if v != default)
    if bool in options:
        return not default
    if float in options or int in options:
        bounds = f.metadata.get("bounds", {})
        if "le" in bounds or "lt" in bounds:
            return (default or 0.5) / 2
        return (default or 1) * 2
    return "x:y"


@pytest.mark.parametrize("case", ONLY_WITH, ids=_id)
def test_an_option_set_where_it_does_not_apply_is_refused_naming_it(case):
    root, path, cls, f = case
    other, values = f.metadata["only_with"]
    hints = typing.get_type_hints(cls)
    config = _set(MINIMAL[root], path, f.name, _other_value(f, hints[f.name]))
    sibling_default = next(g.default for g in dataclasses.fields(cls) if g.name == other)
    if sibling_default in values:  # choose a sibling value under which the option is idle
        choices = get_args(next(a for a in (hints[other],) if get_origin(a) is Literal))
        idle = next(v for v in choices if v not in values and v not in ("regex", "function"))
        config = _set(config, path, other, idle)
    for message in _build_both(root, path, cls, config, f.name):
        assert message.startswith(f"{path}{f.name} does not apply to {path}{other}: "), message


@pytest.mark.parametrize("case", ONLY_WITH, ids=_id)
def test_an_option_written_out_at_its_default_passes_where_it_does_not_apply(case):
    """``pattern: null`` under ``kind: numeric`` changes nothing, so it is not refused."""
    root, path, cls, f = case
    other, values = f.metadata["only_with"]
    hints = typing.get_type_hints(cls)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    config = _set(MINIMAL[root], path, f.name, default)
    choices = get_args(next(a for a in (hints[other],) if get_origin(a) is Literal))
    idle = next(v for v in choices if v not in values and v not in ("regex", "function"))
    built = from_dict(root, _set(config, path, other, idle))
    section = built
    for name in path.rstrip(".").split(".") if path else []:
        section = getattr(section, name)
    assert getattr(section, f.name) == default


@pytest.mark.parametrize("case", ONLY_WITH, ids=_id)
def test_an_option_that_applies_passes(case):
    root, path, cls, f = case
    other, values = f.metadata["only_with"]
    hints = typing.get_type_hints(cls)
    config = _set(MINIMAL[root], path, other, values[0])
    config = _set(config, path, f.name, _other_value(f, hints[f.name]))
    needs = {"regex": "pattern", "function": "function", "reward_model": "reward_model"}
    needs |= {"density_ratio": "target_unlabelled", "model_function": "function"}
    needs |= {"column": "column", "fixed": "value"}
    if values[0] in needs and needs[values[0]] != f.name:
        config = _set(config, path, needs[values[0]], 2.0 if values[0] == "fixed" else "x:y")
    from_dict(root, config)


def test_help_shows_a_range_and_where_an_option_applies(capsys):
    with pytest.raises(SystemExit):
        main(["rft", "--help"])
    out = capsys.readouterr().out
    assert "generation.k  (int, >= 1; default 4)" in out
    assert "generation.top_p  (float, in (0, 1]; default 1.0)" in out
    assert "selection.beta  (float, >= 2.22507e-308; only with rule: tilted; default 1.0)" in out
