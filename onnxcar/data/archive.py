"""Safe, cached extraction of tar archives of image trees."""

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from onnxcar.errors import OnnxcarError


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/onnxcar/extract``, by default ``~/.cache/onnxcar/extract``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "onnxcar" / "extract"


def extract(archive: Path) -> Path:
    """Unpacks ``archive`` once into the cache (keyed by path, size and mtime) and returns that folder.

    Only regular files and folders with relative paths inside the archive are
    accepted; absolute paths, ``..``, links and devices are refused before any
    byte of them is written.
    """
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    dest = cache_dir() / key
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=dest.parent))
    try:
        _unpack(archive, tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def tree_root(folder: Path) -> Path:
    """The class-tree root: ``folder``, or the single top-level folder that holds only folders."""
    entries = _visible(folder)
    if len(entries) == 1 and entries[0].is_dir():
        inner = _visible(entries[0])
        if inner and all(p.is_dir() for p in inner):
            return tree_root(entries[0])
    return folder


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def _unpack(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                _check(member, archive)
                target = dest.joinpath(*PurePosixPath(member.name).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise OnnxcarError(f"cannot read archive {archive}: {err}") from err


def _check(member: tarfile.TarInfo, archive: Path) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("\\"):
        why = "absolute path"
    elif ".." in path.parts:
        why = "path leaves the archive folder"
    elif member.issym() or member.islnk():
        why = "link"
    elif not (member.isfile() or member.isdir()):
        why = "not a regular file or folder"
    else:
        return
    raise OnnxcarError(f"refusing to extract {archive}: unsafe member {member.name!r} ({why})")
