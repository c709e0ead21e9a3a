"""Turn a command's PATH into a local config.json: a file, a folder, a hub cache folder, or a
Hugging Face model id (``org/name``).

Order, so that nothing surprising happens:

1. A local path that exists always wins (a folder called ``org/name`` next to you is read, not
   the hub).
2. A hub cache folder (``models--org--name``, as ``huggingface_hub`` lays it out) is read at
   ``refs/<revision or main>`` -> ``snapshots/<hash>/config.json``; a snapshot folder is a plain
   folder holding config.json.
3. Anything else shaped like a repo id is looked up with ``huggingface_hub``: the local cache
   first (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ``~/.cache/huggingface/hub``); then, unless
   ``HF_HUB_OFFLINE`` is set, only ``config.json`` is downloaded (``hf_hub_download``).

``huggingface_hub`` is the optional extra ``hub`` (``pip install -c constraints.txt -e '.[hub]'``):
it is imported only here, only when an id is given, so the report path never pays for it. It is
optional rather than a dependency because most users pass a file, and it pulls in requests/
httpx, tqdm, filelock, fsspec and yaml.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from perceiver_calc.errors import InputError

# huggingface_hub's own rule (utils/_validators.py validate_repo_id): one "/", names of
# letters, digits, "-", "_", "."; no "--" or ".." inside, no leading/trailing "-" or ".".
_REPO_ID = re.compile(r"^(?:[\w\-.]{1,96}/)?[\w\-.]{1,96}$")

HINT = "pip install -c constraints.txt -e '.[hub]' (from a clone of perceiver-calc)"


def _cache_dir() -> Path:
    """The hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _snapshot(cache_folder: Path, revision: str | None) -> Path:
    """``models--org--name`` -> its snapshot folder at ``revision`` (a ref or a commit hash)."""
    rev = revision or "main"
    ref = cache_folder / "refs" / rev
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else rev
    snap = cache_folder / "snapshots" / commit
    if not snap.is_dir():
        have = sorted(p.name for p in (cache_folder / "refs").glob("*")) or ["none"]
        raise InputError(
            f"{cache_folder}: hub cache folder has no snapshot for revision {rev!r} "
            f"(refs: {', '.join(have)}); pass --revision with a ref or a commit it holds"
        )
    return snap


def locate(source: str | Path, revision: str | None = None) -> Path:
    """A local path for ``source`` (see the module doc). Raises :class:`InputError`."""
    path = Path(source)
    try:
        exists = path.exists()
    except (OSError, ValueError):
        # ENAMETOOLONG, EACCES on a parent, a NUL byte: not a hub id either; read_json names
        # the path and the reason (exit 2).
        return path
    if exists:
        if path.is_dir() and path.name.startswith("models--") and (path / "snapshots").is_dir():
            return _snapshot(path, revision)
        return path
    text = str(source)
    if not _REPO_ID.match(text) or "/" not in text or text.endswith(".json"):
        return path  # not an id: let the reader say "no such file"
    cached = _cache_dir() / ("models--" + text.replace("/", "--"))
    if cached.is_dir():
        try:
            snap = _snapshot(cached, revision)
        except InputError:
            snap = None
        if snap is not None and (snap / "config.json").is_file():
            return snap / "config.json"
    if _offline():
        raise InputError(
            f"{text}: no such file, and not in the Hugging Face cache ({_cache_dir()}) at "
            f"revision {revision or 'main'!r} while HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE "
            "to download its config.json, or pass a local config.json"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise InputError(
            f"{text}: no such file; to read it as a Hugging Face model id install "
            f"huggingface_hub: {HINT}"
        ) from None
    try:
        return Path(hf_hub_download(text, "config.json", revision=revision, cache_dir=_cache_dir()))
    except Exception as err:  # network, 401/404, bad revision: all bad input here
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError(
            f"{text}: no such file, and its config.json could not be fetched from the Hugging "
            f"Face hub ({type(err).__name__}: {first}); check the id and --revision, or log in "
            "for a gated model (hf auth login)"
        ) from None
