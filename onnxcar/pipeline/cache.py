"""The recipe's stage cache: one entry per finished stage, verified before it is reused.

An entry is ``<stem>.json``, written last, beside the files it owns: ``<stem>.onnx`` (and its
``.onnx.data``) when the stage made a new model, and one ``<stem>.<suffix>`` per file that goes
with the model. The JSON holds the stage's full cache key, its record, the SHA-256 of each file
and of its own content. An entry that does not verify (edited, truncated, a file missing or
replaced) is deleted with a warning, and its stage runs again.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.io import atomic_write, load_model, save_model
from onnxcar.report import dumps

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """A finished stage: its record (as saved), its model (None: the stage kept its input) and files by suffix."""

    record: dict
    model: onnx.ModelProto | None
    files: dict[str, bytes]


class _Corrupt(Exception):
    """An entry that does not verify; never leaves this module."""


def read_entry(stem: Path, key: str) -> Entry | None:
    """The verified entry at ``stem`` for ``key``; None when there is none or it was corrupt (now deleted)."""
    if not stem.with_suffix(".json").exists():
        return None
    try:
        return _verified(stem, key)
    except (_Corrupt, OnnxcarError, OSError, ValueError, KeyError, TypeError) as err:
        log.warning("the cached stage %s is corrupt (%s): running it again", stem.name, err)
        remove_entry(stem)
        return None


def write_entry(stem: Path, key: str, record: dict, model: onnx.ModelProto | None, files: dict[str, bytes]) -> None:
    """Writes the entry's files, then its JSON with their hashes."""
    if model is not None:
        save_model(model, stem.with_suffix(".onnx"), force=True)
    for suffix, data in files.items():
        atomic_write(stem.with_suffix(f".{suffix}"), lambda f, data=data: f.write(data))
    weights = _weights(stem)
    owned = [path.name for path in _owned(stem, model is not None, sorted(files))]
    owned += [weights.name] if model is not None and weights.exists() else []
    body = {"key": key, "record": record, "model": model is not None, "files": sorted(files),
            "hashes": {name: _file_hash(stem.parent / name) for name in owned}}
    text = dumps({**body, "digest": _digest(body)})
    atomic_write(stem.with_suffix(".json"), lambda f: f.write(text.encode()))


def remove_entry(stem: Path) -> None:
    """Deletes the entry at ``stem`` and every file it may own."""
    for path in stem.parent.glob(f"{stem.name}.*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def _verified(stem: Path, key: str) -> Entry:
    saved = json.loads(stem.with_suffix(".json").read_text())
    if not isinstance(saved, dict) or saved.pop("digest", None) != _digest(saved):
        raise _Corrupt("its content does not match its hash")
    if saved["key"] != key:
        raise _Corrupt("it was saved under another key")
    suffixes = saved["files"]
    unhashed = [path.name for path in _owned(stem, saved["model"], suffixes) if path.name not in saved["hashes"]]
    if unhashed:
        raise _Corrupt(f"{unhashed[0]} has no hash")
    for name, digest in saved["hashes"].items():
        if _file_hash(stem.parent / name) != digest:
            raise _Corrupt(f"{name} does not match its hash")
    model = load_model(stem.with_suffix(".onnx")) if saved["model"] else None
    files = {suffix: stem.with_suffix(f".{suffix}").read_bytes() for suffix in suffixes}
    return Entry(saved["record"], model, files)


def _owned(stem: Path, has_model: bool, suffixes: list[str]) -> list[Path]:
    """The files an entry must hash: its model (when it made one) and its files by suffix."""
    return [stem.with_suffix(".onnx")] * has_model + [stem.with_suffix(f".{suffix}") for suffix in suffixes]


def _weights(stem: Path) -> Path:
    """Where the entry's model keeps its weights when it is too large for one protobuf."""
    return stem.with_name(stem.name + ".onnx.data")


def _digest(body: dict) -> str:
    return hashlib.sha256(dumps(body).encode()).hexdigest()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
