"""Configuration: nested dataclasses read from YAML, with ``key.sub=value`` overrides.

Every option is checked against the dataclass fields before anything runs: an unknown key is
an error that suggests the closest valid name, and a value of the wrong type says what was
expected. Modelled on scikit-learn's validation: fail early, say how to fix it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import os
import threading
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar, Union, get_args, get_origin

import yaml

if TYPE_CHECKING:
    from typing_extensions import Unpack

T = TypeVar("T")


class Bounds(TypedDict, total=False):
    """A number's range and how a value outside it is told: the keywords :func:`opt` declares
    and :func:`check_number` checks (one message format for both)."""

    gt: float  # greater than
    ge: float  # greater than or equal
    lt: float
    le: float
    fix: str  # what to use instead, appended to the message
    what: str  # the range in words instead (``a number of seconds > 0``)


class ConfigError(ValueError):
    """An option is unknown or has a value of the wrong type."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _float(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # YAML reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    return None


def _check_key(key: Any, tp: Any, where: str) -> Any:
    """A mapping's key, checked against the key annotation but never converted: the group
    labels 0 and '0' are different groups. A true/false key passes as an int."""
    if tp is Any:
        return key
    allowed = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    if isinstance(key, allowed):
        return key
    raise ConfigError(
        f"{where}: the key {key!r} must be {_type_name(tp)}, not {type(key).__name__}. Quote "
        f"it to make it a string: '{key}': ..."
    )


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``, converting where it is lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message says what is wrong
            return _coerce(value, options[0], where)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}.")
    if origin is Literal:
        if value in get_args(tp):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in get_args(tp)], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: {value!r} is not one of {_type_name(tp)}.{hint}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of options, got {value!r}.")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}.")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}.")
        (key_tp, value_tp) = get_args(tp) or (Any, Any)
        return {
            _check_key(k, key_tp, where): _coerce(v, value_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}.")
    if tp is float:
        number = _float(value)
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}.")
        if not math.isfinite(number):
            # NaN or infinity as an option only fails later, far from the option that caused it.
            raise ConfigError(
                f"{where}: expected a finite number, got {value!r}. NaN and infinity are not "
                "valid here: give a number."
            )
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}.")
    return value


# What a section's constructor records: the options the user set (options_given). An
# instance attribute, not a dataclass field, so to_dict and == never see it.
_GIVEN = "_rsft_options_given"
# What the section about to be built records as given, when not its keyword arguments: the
# keys of the mapping from_dict reads, or the record of the section replace() rebuilds.
_BUILDING = threading.local()


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping of options, got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown option {path!r}.{hint} Valid options here: {', '.join(sorted(fields))}."
            )
        kwargs[key] = _coerce(value, hints[key], path)
    for key, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if key in kwargs or not missing:
            continue
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _coerce({}, hints[key], path)  # its own checks say what is missing
        else:
            raise ConfigError(f"missing required option {path!r}: {f.metadata.get('help', '')}")
    _BUILDING.given = frozenset(data)  # the keys of the mapping, even when it names all
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err
    finally:
        _BUILDING.given = None
    # Nested sections are built first, so a section's __post_init__ sees what was set in its
    # subsections (the checks of options that do not apply to the chosen method need that);
    # a section's constructor records its own (:func:`section`).
    return obj


def _default(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh one for a factory), or MISSING for a required one."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def options_given(section: Any) -> set[str]:
    """The options of a config section that the user set, whatever their value.

    A section built by a constructor of :func:`section` records the options it was given:
    :func:`from_dict` passes exactly the keys of the mapping it reads (the YAML file with the
    command-line overrides merged in), and Python passes its keyword arguments, so an option
    set to its default value counts as set either way. Where every option was passed at
    once (``dataclasses.replace``; :func:`replace` keeps the record instead) or the section
    has no record, the options whose value differs from the default count.
    """
    given = getattr(section, _GIVEN, None)
    if given is not None:
        return set(given)
    return {
        f.name
        for f in dataclasses.fields(section)
        if f.init and getattr(section, f.name) != _default(f)
    }


def range_text(
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> str:
    """``>= 1``, ``> 0``, ``in (0, 1]``: a numeric option's range as help and errors say it."""
    low = ("(", gt) if gt is not None else ("[", ge)  # open or closed end, and its value
    high = (")", lt) if lt is not None else ("]", le)
    if low[1] is not None and high[1] is not None:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low[1] is not None:
        return f"{'>' if low[0] == '(' else '>='} {low[1]:g}"
    if high[1] is not None:
        return f"{'<' if high[0] == ')' else '<='} {high[1]:g}"
    return ""


def check_number(name: str, value: float | None, **bounds: Unpack[Bounds]) -> None:
    """Refuse a numeric option that is not finite or lies outside its range, naming it.

    ``None`` passes (an unset optional option); see :class:`Bounds` for the keywords.
    """
    if value is None:
        return
    gt, ge, lt, le = (bounds.get(k) for k in BOUNDS)
    fix, what = bounds.get("fix", ""), bounds.get("what", "")
    ok = math.isfinite(value)
    ok = ok and (gt is None or value > gt) and (ge is None or value >= ge)
    ok = ok and (lt is None or value < lt) and (le is None or value <= le)
    if ok:
        return
    rule = what or range_text(gt, ge, lt, le)
    if not what and (not math.isfinite(value) or not rule):
        rule = f"a finite number {rule}".strip()
    raise ConfigError(f"{name} must be {rule}, got {value!r}." + (f" {fix}" if fix else ""))


def to_dict(obj: Any) -> Any:
    """A plain, YAML-safe copy of a config dataclass."""
    return copy.deepcopy(dataclasses.asdict(obj))


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` merged into a copy of ``base``, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.01", "data.feature_columns=[a,b]"]`` -> a nested mapping (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value.")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({problem}). Quote strings "
                "that start with * & ! or contain ': ', e.g. "
                '\'param_level.patterns=["classifier.*", "*.bias"]\'.'
            ) from err
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override.")
        node[parts[-1]] = value
    return out


def _yaml_problem(err: yaml.YAMLError) -> str:
    """What the YAML parser found wrong, and where (1-based line and column)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = f" ({err.context})" if getattr(err, "context", None) else ""
    hint = ". Check the indentation, and quote values that hold ': ' or start with * & ! { [."
    return f"{problem}{where}{context}{hint}"


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The options in a YAML config file; any problem with the file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist.")
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not a text file in UTF-8 ({err.reason} at byte {err.start}); a config is "
            "a YAML text file."
        ) from err
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror}.") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level of a config must be a mapping of options.")
    return data


def check_output_dir(path: str | Path, name: str = "output_dir", main_process: bool = True) -> None:
    """Refuse an output folder that cannot be created or written, or that another rsft run
    is writing (:mod:`rsft.output_lock`), before any loading starts (otherwise the run fails
    only when it first saves, after all the work). The other processes of a distributed run
    (``main_process=False``) leave the lock alone: their main process may hold it already."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a link to nothing: creating the folder would fail
            part = "it" if existing == path else f"{str(existing)!r}, part of that path,"
            raise ConfigError(
                f"{name} {str(path)!r}: {part} is a symbolic link to "
                f"{os.readlink(existing)!r}, which does not exist. Create that folder, remove "
                f"the link, or choose another {name}."
            )
        existing = existing.parent
    if not existing.is_dir():
        part = "it" if existing == path else f"{str(existing)!r}, part of that path,"
        raise ConfigError(
            f"{name} {str(path)!r}: {part} is a file, not a folder. Choose another {name}, "
            "or move the file away."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{name} {str(path)!r}: the folder {str(existing)!r} is not writable. Choose a "
            f"{name} you can write to."
        )
    if main_process:
        from rsft.output_lock import check_unlocked  # here: rsft.output_lock imports this module

        check_unlocked(path)


BOUNDS = ("gt", "ge", "lt", "le")


def opt(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = None,
    help: str = "",
    only_with: tuple[str, tuple[Any, ...]] | None = None,
    **bounds: Unpack[Bounds],
) -> Any:
    """A config option: a dataclass field with its help text and its constraints.

    ``gt``/``ge``/``lt``/``le`` bound a number (``None`` always passes: an unset optional
    option); ``fix`` and ``what`` go into the message of a value outside them; ``only_with``
    (``("rule", ("tilted",))``: a sibling option and the values it must have) declares that
    the option applies only then, so setting it otherwise is an error instead of a no-op.
    Choices are the field's ``Literal`` type. :func:`check_declared` checks all of them, and
    ``rsft <command> --help`` shows them (:func:`describe`).
    """
    unknown = set(bounds) - set(Bounds.__annotations__)
    if unknown:
        raise TypeError(f"opt() got unexpected keywords {sorted(unknown)}")
    metadata: dict[str, Any] = {"help": help}
    if any(k in bounds for k in BOUNDS):
        metadata["bounds"] = dict(bounds)
    if only_with is not None:
        metadata["only_with"] = only_with
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(where: str) -> Callable[[type[T]], type[T]]:
    """Make a config dataclass check its declared constraints whenever it is built.

    ``where`` is the section's dotted name in a config file (``"generation"``; ``""`` for a
    top level). The options given to its constructor are recorded (:func:`options_given`)
    and every option is checked against its ``opt(...)`` constraints before the section's
    own ``__post_init__`` runs, the same whether the config comes from YAML, command-line
    overrides or Python.
    """

    def wrap(cls: type[T]) -> type[T]:
        init, post_init = cls.__init__, getattr(cls, "__post_init__", None)
        names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            given: Any = set(names[: len(args)]) | set(kwargs)
            pending = getattr(_BUILDING, "given", None)
            if pending is not None:  # from_dict's keys, or the record replace() keeps
                given, _BUILDING.given = pending, None
            elif given == set(names):
                given = None  # every option passed (dataclasses.replace): see options_given
            object.__setattr__(self, _GIVEN, None if given is None else frozenset(given))
            init(self, *args, **kwargs)
            if post_init is None:  # dataclass's __init__ calls no __post_init__ then
                check_declared(self, where)

        def __post_init__(self: Any) -> None:
            check_declared(self, where)
            post_init(self)

        cls.__init__ = __init__  # type: ignore[method-assign]
        if post_init is not None:  # before the section's own checks, which may rely on them
            cls.__post_init__ = __post_init__  # type: ignore[attr-defined]
        cls._rsft_section = where  # type: ignore[attr-defined]
        return cls

    return wrap


def check_declared(obj: Any, where: str = "") -> None:
    """Check every option of one config section against its declared constraints, with one
    message format naming the option: its numeric range, and whether it applies at all."""
    prefix = f"{where}." if where else ""
    given = options_given(obj)
    for f in dataclasses.fields(obj):
        meta, value = f.metadata, getattr(obj, f.name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if "bounds" in meta and number:
            check_number(f"{prefix}{f.name}", value, **meta["bounds"])
        elif isinstance(value, float) and not math.isfinite(value):
            check_number(f"{prefix}{f.name}", value)  # NaN or infinity: never an option
        # an option given at its default (``pattern: null``) changes nothing: no need to refuse
        if "only_with" in meta and f.name in given and value != _default(f):
            other, values = meta["only_with"]
            if getattr(obj, other) not in values:
                allowed = " or ".join(str(v) for v in values)
                raise ConfigError(
                    f"{prefix}{f.name} does not apply to {prefix}{other}: "
                    f"{getattr(obj, other)}; it is used only with {prefix}{other}: {allowed}. "
                    f"Remove it, or set {prefix}{other}."
                )


def constraint_text(f: dataclasses.Field) -> str:
    """A field's declared constraints in words, for ``--help``: ``>= 1``, ``only with rule:
    tilted``."""
    parts = []
    if "bounds" in f.metadata:
        parts.append(range_text(*(f.metadata["bounds"].get(k) for k in BOUNDS)))
    if "only_with" in f.metadata:
        other, values = f.metadata["only_with"]
        parts.append(f"only with {other}: {' or '.join(str(v) for v in values)}")
    return "; ".join(parts)


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` that keeps the record of which options were given (plus the
    changed ones), so the "does not apply" checks see the same options as before."""
    _BUILDING.given = frozenset(options_given(obj) | set(changes))
    try:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    finally:
        _BUILDING.given = None


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted name, type, default, help) of every option of a config dataclass, recursively."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, name + "."))
            continue
        value = _default(f)
        default = "required" if value is dataclasses.MISSING else repr(value)
        kind = _type_name(tp)
        if constraint_text(f):
            kind = f"{kind}, {constraint_text(f)}"
        rows.append((name, kind, default, f.metadata.get("help", "")))
    return rows


def options_help(cls: type) -> str:
    import textwrap

    lines = []
    for name, tp, default, text in describe(cls):
        lines.append(f"  {name}  ({tp}; default {default})")
        if text:
            lines.extend(
                textwrap.wrap(
                    text,
                    88,
                    initial_indent="      ",
                    subsequent_indent="      ",
                    break_on_hyphens=False,
                )
            )
    return "\n".join(lines)
