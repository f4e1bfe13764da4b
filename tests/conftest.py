"""Fixtures every test folder can use."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it exits or times out first."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "process exited"
        assert time.time() < deadline, f"not ready after {timeout} s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def killer():
    """``kill_when(proc, ready)``: kill a real process at a chosen moment (resume tests)."""
    return kill_when


class HubCache:
    """A Hugging Face cache in a temporary folder, laid out as the libraries leave it after
    downloading: nothing in a test that uses it reaches the Hub.

    - ``model``: a model repo in the hub cache (``models--org--name``: ``refs/<ref>``, the
      files as ``blobs/`` with ``snapshots/<commit>/`` links to them);
    - ``dataset``: what ``datasets.load_dataset`` prepares online and reads offline (its own
      cache, ``<org>___<name>/<subset>/0.0.0/<commit>/``, built by its own builder from
      parquet files), and the dataset card in the hub cache at ``refs/main``.
    """

    def __init__(self, root, monkeypatch) -> None:
        import datasets
        import huggingface_hub

        self.root = root
        self.hub, self.data = root / "hub", root / "datasets"
        for name, value in (("HF_HOME", root), ("HF_HUB_CACHE", self.hub)):
            monkeypatch.setenv(name, str(value))
        monkeypatch.setenv("HF_DATASETS_CACHE", str(self.data))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
        # The libraries read these once, at import: the running process sees the patches.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(self.hub))
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", self.data)
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def model(self, repo: str, folder, *, commit: str = "1" * 40, ref: str | None = "main"):
        """Put the files of a model ``folder`` in the cache as ``repo`` at ``commit``."""
        import hashlib
        import os
        from pathlib import Path

        store = self.hub / f"models--{repo.replace('/', '--')}"
        snapshot = store / "snapshots" / commit
        for file in sorted(Path(folder).rglob("*")):
            if file.is_file():
                blob = store / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
                blob.parent.mkdir(parents=True, exist_ok=True)
                blob.write_bytes(file.read_bytes())
                link = snapshot / file.relative_to(folder)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(blob, link.parent))
        if ref:
            (store / "refs").mkdir(exist_ok=True)
            (store / "refs" / ref).write_text(commit)
        return snapshot

    def dataset(self, repo: str, subsets: dict, *, commit: str = "2" * 40) -> None:
        """Prepare ``repo`` at ``commit`` as ``datasets`` does: ``subsets`` maps a subset
        name (None: a dataset without subsets) to ``{split: rows}``."""
        import shutil

        import datasets
        import datasets.load as loading
        from datasets.naming import camelcase_to_snakecase

        name = camelcase_to_snakecase(repo.split("/")[1])
        files = self.root / "repos" / repo / commit
        configs = []
        for subset, splits in subsets.items():
            folder = subset or "data"
            configs.append(f"- config_name: {subset}\n  data_files:")
            for split, rows in splits.items():
                path = files / folder / f"{split}-00000-of-00001.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                datasets.Dataset.from_list(rows).to_parquet(str(path))
                configs.append(f"  - split: {split}\n    path: {folder}/{split}-*")
        card = "---\nconfigs:\n" + "\n".join(configs) + "\n---\n" if None not in subsets else ""
        (files / "README.md").write_text(card or "A dataset.\n")

        def from_files(path, **kwargs):  # the module the Hub would give, read from `files`
            module = loading.LocalDatasetModuleFactory(str(files)).get_module()
            module.hash = commit
            module.builder_kwargs["dataset_name"] = name
            return module

        build = self.root / "build"
        real = loading.dataset_module_factory
        loading.dataset_module_factory = from_files
        try:
            for subset in subsets:
                builder = datasets.load_dataset_builder(repo, subset, cache_dir=str(build))
                builder.download_and_prepare()
        finally:
            loading.dataset_module_factory = real
        target = self.data / f"{repo.split('/')[0]}___{name}"
        for config in (build / name).iterdir():
            if config.is_dir():
                shutil.copytree(config, target / config.name, dirs_exist_ok=True)
        shutil.rmtree(build)
        card_store = self.hub / f"datasets--{repo.replace('/', '--')}"
        (card_store / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        shutil.copy(files / "README.md", card_store / "snapshots" / commit / "README.md")
        (card_store / "refs").mkdir(exist_ok=True)
        (card_store / "refs" / "main").write_text(commit)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> HubCache:
    """An offline Hugging Face cache in ``tmp_path`` (see :class:`HubCache`)."""
    return HubCache(tmp_path / "hf", monkeypatch)
