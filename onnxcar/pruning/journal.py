"""An append-only journal of greedy iterations, so that a killed run resumes to the same result.

The first line holds the run's fingerprint; each further line holds one whole iteration, so
a kill leaves either all of an iteration or none of it. Every line reaches the operating
system at once (a killed process loses none); the file is synced to disk at most once per
SYNC_SECONDS and when it is closed, so thousands of fast iterations do not wait on the disk
(a machine that crashes loses at most that last second, and the run resumes before it). The
file is locked while a run writes it: a second run on the same output is refused.
"""

import fcntl
import hashlib
import json
import os
import pathlib
import time

from onnxcar.errors import OnnxcarError

SYNC_SECONDS = 1.0


def journal_path(output: pathlib.Path) -> pathlib.Path:
    return output.with_name(output.name + ".journal")


def fingerprint(model_bytes: bytes, settings: dict, arrays: tuple = ()) -> str:
    """Identifies a run: the model, every setting that changes which filters go, and the data's content."""
    digest = hashlib.sha256(model_bytes)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for array in arrays:
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(memoryview(array).cast("B") if array.flags.c_contiguous else array.tobytes())
    return digest.hexdigest()


class Journal:
    """The iterations of one run (``iterations``: those a resumed run replays), one JSON line each."""

    def __init__(self, path: pathlib.Path, run_id: str, *, resume: bool):
        self.path = path
        self.iterations: list[list[dict]] = []
        self._synced = float("-inf")  # when the file was last synced to disk
        existed = path.exists()
        try:
            self._file = open(path, "a+b")
        except OSError as err:
            raise OnnxcarError(f"cannot write the journal {path}: {err.strerror or err}") from err
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise OnnxcarError(f"another run is writing {path}: wait for it to finish, or choose another output") from None
        try:
            if resume and existed:
                self.iterations = self._read(run_id)
                return
            self._file.truncate(0)
            self._append({"run": run_id})
        except BaseException:
            self.close(remove=not existed)
            raise

    def _read(self, run_id: str) -> list[list[dict]]:
        self._file.seek(0)
        data = self._file.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line cut short by a kill is dropped
        try:
            records = [json.loads(line) for line in complete.splitlines()]
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OnnxcarError(f"{self.path} is damaged; delete it to start afresh") from None
        if not records or not isinstance(records[0], dict) or records[0].get("run") != run_id:
            raise OnnxcarError(f"{self.path} belongs to a different model, data or settings; delete it to start afresh")
        self._file.truncate(len(complete))  # later appends start on a fresh line
        batches = [r.get("removals") if isinstance(r, dict) else None for r in records[1:]]
        if any(not isinstance(b, list) or not all(isinstance(e, dict) for e in b) for b in batches):
            raise OnnxcarError(f"{self.path} holds a line that is not an iteration; delete it to start afresh")
        return batches

    def _append(self, record: dict) -> None:
        try:
            self._file.write((json.dumps(record, sort_keys=True) + "\n").encode())
            self._file.flush()
            if time.monotonic() - self._synced >= SYNC_SECONDS:
                self._sync()
        except OSError as err:
            raise OnnxcarError(f"cannot write the journal {self.path}: {err.strerror or err}") from err

    def _sync(self) -> None:
        os.fsync(self._file.fileno())
        self._synced = time.monotonic()

    def record(self, removals: list[dict]) -> None:
        """Appends one iteration's removals as one line."""
        self._append({"removals": removals})

    def close(self, *, remove: bool = False) -> None:
        """Releases the journal; ``remove`` deletes it (the run is complete)."""
        if self._file.closed:
            return
        try:
            if remove:
                self.path.unlink(missing_ok=True)
            else:
                self._sync()
        except OSError as err:
            raise OnnxcarError(f"cannot write the journal {self.path}: {err.strerror or err}") from err
        finally:
            self._file.close()
