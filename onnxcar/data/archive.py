"""Tar archives of image trees, read in place: every member checked, the size bounded, nothing unpacked."""

import os
import tarfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator, TypeVar

from onnxcar.errors import OnnxcarError

T = TypeVar("T")

_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)  # gzip's checksum failures are OSErrors


@dataclass(frozen=True)
class ImageTree:
    """The class folders of an archive, each with its files in sorted path order."""

    classes: list[str]
    files: list[list[tarfile.TarInfo]]
    stamp: tuple[int, int, int]  # inode, size and mtime of the archive that was listed


def list_tree(archive: Path, max_files: int, max_bytes: int) -> ImageTree:
    """Lists the image tree ``root/<class>/<image>`` in ``archive``.

    Each member is checked before the next is read: only regular files and folders
    with relative paths inside the archive pass (absolute paths, ``..``, links and
    devices are refused), at most ``max_files`` members that unpack to at most
    ``max_bytes``. A compressed archive is read to its end, so its checksum is
    verified. The root is the top level, or the single top-level folder that holds
    only folders (repeatedly); names starting with a dot are skipped.
    """
    files: dict[PurePosixPath, tarfile.TarInfo] = {}
    folders: set[PurePosixPath] = set()
    try:
        with _open(archive) as (tar, compressed):
            for count, member in enumerate(tar, 1):
                if count > max_files:
                    raise OnnxcarError(f"{archive} holds more than {max_files} members (archive_max_files)")
                _check(member, archive)
                if member.offset_data + member.size > max_bytes:
                    raise _too_big(archive, max_bytes)
                if member.isdir():
                    folders.add(PurePosixPath(member.name))
                else:
                    files[PurePosixPath(member.name)] = member
            if compressed:
                _read_to_end(tar.fileobj, archive, max_bytes)
            stamp = _stamp(tar)
    except _READ_ERRORS as err:
        raise OnnxcarError(f"cannot read archive {archive}: {err}") from err
    folders.update(parent for path in files for parent in path.parents)
    clash = next((path for path in files if path in folders), None)
    if clash is not None:
        raise OnnxcarError(f"cannot read archive {archive}: {clash} is both a file and a folder")
    root = _root([*files, *folders], folders)
    classes = sorted(p.name for p in folders if p.parent == root and p != root and not hidden(p.name))
    by_class: dict[str, list[PurePosixPath]] = {name: [] for name in classes}
    for path in files:
        parts = path.relative_to(root).parts if path.is_relative_to(root) else ()
        if len(parts) > 1 and parts[0] in by_class and not hidden(*parts):
            by_class[parts[0]].append(path)
    return ImageTree(classes, [[files[p] for p in sorted(by_class[name])] for name in classes], stamp)


def read_members(archive: Path, tree: ImageTree, members: list[tarfile.TarInfo],
                 read: Callable[[IO[bytes], str], T]) -> list[T]:
    """``read(file, name)`` of each of ``members``, in their order; the archive is read once, front to back."""
    results: list = [None] * len(members)
    try:
        with _open(archive) as (tar, _):
            if _stamp(tar) != tree.stamp:
                raise OnnxcarError(f"{archive} changed after it was listed; run again")
            for k in sorted(range(len(members)), key=lambda k: members[k].offset_data):
                with tar.extractfile(members[k]) as file:
                    results[k] = read(file, member_name(archive, members[k]))
    except _READ_ERRORS as err:
        raise OnnxcarError(f"cannot read archive {archive}: {err}") from err
    return results


def member_name(archive: Path, member: tarfile.TarInfo) -> str:
    return f"{archive}:{member.name}"


def hidden(*parts: str) -> bool:
    """Whether a path with these parts is hidden (some part starts with a dot)."""
    return any(part.startswith(".") for part in parts)


@contextmanager
def _open(archive: Path) -> Iterator[tuple[tarfile.TarFile, bool]]:
    """The archive opened for reading, and whether it is compressed."""
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
        yield tar, tar.fileobj is not raw


def _stamp(tar: tarfile.TarFile) -> tuple[int, int, int]:
    st = os.fstat(tar.fileobj.fileno())
    return st.st_ino, st.st_size, st.st_mtime_ns


def _read_to_end(stream: IO[bytes], archive: Path, max_bytes: int) -> None:
    """Reads a decompressed stream past the tar's end marker; the decompressor checks the checksum at the end."""
    while stream.read(1 << 20):
        if stream.tell() > max_bytes:
            raise _too_big(archive, max_bytes)


def _too_big(archive: Path, max_bytes: int) -> OnnxcarError:
    return OnnxcarError(f"{archive} unpacks to more than {max_bytes} bytes (archive_max_bytes)")


def _root(paths: list[PurePosixPath], folders: set[PurePosixPath]) -> PurePosixPath:
    """The top level, or the single visible top-level folder that holds only folders (repeatedly)."""
    children: dict[PurePosixPath, list[PurePosixPath]] = {}
    for path in paths:
        if path.parts and not hidden(path.name):
            children.setdefault(path.parent, []).append(path)
    root = PurePosixPath()
    while True:
        entries = children.get(root, [])
        if len(entries) != 1 or entries[0] not in folders:
            return root
        inner = children.get(entries[0], [])
        if not inner or any(p not in folders for p in inner):
            return root
        root = entries[0]


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
    raise OnnxcarError(f"refusing to read {archive}: unsafe member {member.name!r} ({why})")
