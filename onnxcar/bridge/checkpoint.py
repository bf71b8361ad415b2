"""Fine-tuning checkpoints: where they go, the fingerprint of the run they belong to, atomic save, checked load."""

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import torch

from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.data import Dataset
from onnxcar.errors import OnnxcarError
from onnxcar.io import atomic_write


def checkpoint_path(output: Path) -> Path:
    """The checkpoint of a run that writes ``output``: ``OUTPUT.ckpt`` beside it."""
    return output.with_name(output.name + ".ckpt")


def fingerprint(model: onnx.ModelProto, teacher: onnx.ModelProto | None, train: Dataset, val: Dataset,
                config: FinetuneConfig, shared: Mapping[str, tuple[np.ndarray, np.ndarray]],
                prune_to: Mapping[str, float]) -> str:
    """Identifies a run: the model and teacher bytes, the shared weights, the data specs and sizes, the config
    and the gradual pruning targets."""
    digest = hashlib.sha256(model.SerializeToString())
    if teacher is not None:
        digest.update(teacher.SerializeToString())
    for name, arrays in sorted(shared.items()):
        digest.update(name.encode())
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
    settings = {"config": config.to_dict(), "train": train.spec.to_dict(), "val": val.spec.to_dict(),
                "sizes": [len(train), len(val)]}
    if prune_to:
        settings["prune_to"] = dict(sorted(prune_to.items()))
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Writes ``state`` to a temporary file, then renames it over ``path``: a crash leaves the old one whole."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, run_id: str) -> dict:
    """The state saved at ``path`` (tensors and plain containers only); OnnxcarError if unreadable, another run's,
    or with a field a resumed run cannot use."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise unusable(path, err) from None
    if not isinstance(state, dict) or state.get("run") != run_id:
        raise OnnxcarError(f"{path} belongs to a different model, data or settings; delete it to start afresh")
    bad = next((name for name, check in _FIELDS.items() if not check(state.get(name), state)), None)
    if bad is not None:
        raise unusable(path, f"field {bad!r} is missing or malformed")
    return state


def unusable(path: Path, reason: Exception | str) -> OnnxcarError:
    """The one-line error for a checkpoint a run cannot resume from."""
    text = " ".join(str(reason).split())[:300] or type(reason).__name__
    return OnnxcarError(f"cannot resume from checkpoint {path}: {text}; delete it to start afresh")


def _tensors(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _bytes(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8


def _history(value) -> bool:
    """Records of epochs 0, 1, ... in order, each with its validation metric."""
    return isinstance(value, list) and len(value) > 0 and all(
        isinstance(r, dict) and r.get("epoch") == i and isinstance(r.get("val"), float) for i, r in enumerate(value)
    )


_FIELDS = {  # what finetune's trainer saves, and what each must be to be restored
    "model": lambda v, state: _tensors(v),
    "optimizer": lambda v, state: isinstance(v, dict),
    "scheduler": lambda v, state: isinstance(v, dict),
    "history": lambda v, state: _history(v),
    "best_state": lambda v, state: v is None or _tensors(v),
    "best_epoch": lambda v, state: type(v) is int and 0 <= v < len(state["history"]),
    "rng": lambda v, state: _bytes(v),
    "cuda_rng": lambda v, state: isinstance(v, list) and all(_bytes(t) for t in v),
    "generator": lambda v, state: _bytes(v),
}
