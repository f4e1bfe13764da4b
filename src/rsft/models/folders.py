"""What rsft checks in a transformers model folder before transformers reads it.

A model folder is data (docs/security.md). Its ``config.json`` and ``tokenizer_config.json``
must be JSON objects: anything else ends in transformers as an error that names neither the
file nor the fix, or as a TypeError. A folder whose config asks to run its own code is refused
with rsft's option for it (``model.trust_remote_code``), never transformers' advice to pass
``trust_remote_code=True`` to a function the user does not call. One place for both, used by
training (:mod:`rsft.models.loading`) and generation (:mod:`rsft.generation.engines.local`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_FILES = ("config.json", "tokenizer_config.json")
TRUST_OPTION = "model.trust_remote_code: true"
RESTORE = "Restore the file from where the model came from (or save the model again)."


def read_json_object(file: Path) -> dict[str, Any]:
    """The JSON object in ``file``; a ValueError naming the file (and the line and column)
    when it is not JSON, not UTF-8, or not an object."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{file} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}. "
            f"{RESTORE}"
        ) from err
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{file} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
            f"{err.start}). {RESTORE}"
        ) from err
    if not isinstance(data, dict):
        raise ValueError(
            f"{file} holds a JSON {type(data).__name__}, not an object of settings. {RESTORE}"
        )
    return data


def check_config_files(folder: Path) -> dict[str, Any]:
    """Check the folder's config files that are there; return ``config.json`` ({} if none)."""
    found = {
        name: read_json_object(folder / name) for name in CONFIG_FILES if (folder / name).is_file()
    }
    return found.get("config.json", {})


def runs_own_code(config: dict[str, Any]) -> bool:
    """Whether transformers could load this config only with the folder's own code: an
    ``auto_map`` naming classes, for a model type transformers does not know (its own rule)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return bool(config.get("auto_map")) and config.get("model_type") not in CONFIG_MAPPING


def remote_code_message(folder: Path, never: str | None = None) -> str:
    """Why a folder that asks to run its code is refused: ``model.trust_remote_code`` allows
    it, or, for a folder in the role ``never`` (e.g. "reward model"), nothing does."""
    asks = f"{folder} asks to run its own code (auto_map in its config)"
    if never is not None:
        return (
            f"{asks}, and rsft never runs a {never}'s code ({TRUST_OPTION} applies to "
            f"model.path only). Use a {never} whose model type transformers knows."
        )
    return (
        f"{asks}, which rsft does not run by default. If you trust this folder, set {TRUST_OPTION}."
    )


def check_remote_code(
    folder: Path, config: dict[str, Any], trusted: bool, never: str | None = None
) -> None:
    """Refuse, before transformers reads it, a folder that needs its own code and is not
    ``trusted`` (see :func:`remote_code_message` for ``never``)."""
    if not trusted and runs_own_code(config):
        raise ValueError(remote_code_message(folder, never))


def remote_code_error(folder: Path, err: ValueError, never: str | None = None) -> ValueError:
    """transformers' refusal of a folder's code (code the checks above cannot see, e.g. a
    tokenizer's) in rsft's words, naming rsft's option instead of ``trust_remote_code=True``;
    any other error as it is."""
    if "trust_remote_code" not in str(err):
        return err
    return ValueError(remote_code_message(folder, never))


def check_model_folder(
    path: str | Path, what: str = "model.path", hint: str = "", trust_remote_code: bool = False
) -> Path:
    """A clear error, before anything loads, when a model folder is missing or incomplete,
    its config files are not JSON objects, or it asks to run its own code untrusted. Only
    model.path can be trusted (``trust_remote_code``): rsft never runs the code of a folder
    in another role (``what``, e.g. a reward model)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{what}: {str(folder)!r} does not exist, so it is not a transformers model folder "
            f"(config.json, weights, tokenizer). {hint}".rstrip()
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{what}: {folder} has no config.json, so it is not a transformers model folder. "
            f"{hint}".rstrip()
        )
    never = None if what == "model.path" else what
    check_remote_code(folder, check_config_files(folder), trust_remote_code, never)
    return folder
