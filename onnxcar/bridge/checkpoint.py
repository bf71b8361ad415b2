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
                config: FinetuneConfig, shared: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Identifies a run: the model and teacher bytes, the shared weights, the data specs and sizes, and the config."""
    digest = hashlib.sha256(model.SerializeToString())
    if teacher is not None:
        digest.update(teacher.SerializeToString())
    for name, arrays in sorted(shared.items()):
        digest.update(name.encode())
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
    settings = {"config": config.to_dict(), "train": train.spec.to_dict(), "val": val.spec.to_dict(),
                "sizes": [len(train), len(val)]}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Writes ``state`` to a temporary file, then renames it over ``path``: a crash leaves the old one whole."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path, run_id: str) -> dict:
    """The state saved at ``path`` (tensors and plain containers only); OnnxcarError if unreadable or another run's."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise OnnxcarError(f"cannot read checkpoint {path}: {first}; delete it to start afresh") from None
    if not isinstance(state, dict) or state.get("run") != run_id:
        raise OnnxcarError(f"{path} belongs to a different model, data or settings; delete it to start afresh")
    return state
