"""An append-only journal of greedy removals, so a killed run can resume where it stopped."""

import hashlib
import json
import os
import pathlib

from onnxcar.errors import OnnxcarError


def journal_path(output: pathlib.Path) -> pathlib.Path:
    return output.with_name(output.name + ".journal")


def fingerprint(model_bytes: bytes, settings: dict) -> str:
    """Identifies a run: the model and every setting that changes which filters go."""
    digest = hashlib.sha256(model_bytes)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


class Journal:
    """One JSON line per removal after a header line holding the run's fingerprint."""

    def __init__(self, path: pathlib.Path, run_id: str, *, resume: bool, force: bool = False):
        self.path = path
        self.entries: list[dict] = []
        if resume and path.exists():
            self.entries = self._read(run_id)
            return
        if path.exists() and not force:
            raise OnnxcarError(f"{path} exists from an earlier run: pass --resume to continue it, or --force to start afresh")
        path.unlink(missing_ok=True)
        self._append({"run": run_id})

    def _read(self, run_id: str) -> list[dict]:
        lines = self.path.read_text().splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: everything before it stands
        if not records or records[0].get("run") != run_id:
            raise OnnxcarError(f"{self.path} belongs to a different model or settings; delete it to start afresh")
        # rewrite without any torn tail so later appends stay parseable
        self.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        return records[1:]

    def _append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def record(self, entry: dict) -> None:
        self._append(entry)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
