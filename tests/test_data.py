"""The data layer: specs, sources, preprocessing, selection, validation and CLI options."""

import io
import json
import logging
import os
import re
import tarfile
import zipfile
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from onnxcar.cli.options import data_options, output_options
from onnxcar.data import DataSpec, Dataset, Preprocess, load_dataset, validate_for_model
from onnxcar.data.select import select_indices
from onnxcar.data.sources import npz_dtype
from onnxcar.errors import OnnxcarError
from tests.hostile import dds, npy_raw

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def pixels(n, h=8, w=8, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def tree(root, counts, h=8, w=8, seed=0):
    """Writes root/<class>/<i>.png; returns {class: NHWC pixels in file order}."""
    written = {}
    for k, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        written[name] = pixels(n, h, w, seed=seed + k)
        for i, img in enumerate(written[name]):
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return written


def tar_of(folder, archive, arcname):
    with tarfile.open(archive, "w:gz" if archive.name.endswith(("gz", "tgz")) else "w") as tar:
        tar.add(folder, arcname=arcname)
    return str(archive)


def expected(nhwc, mean=(0.0,), std=(1.0,), layout="NCHW"):
    x = (nhwc.astype(np.float32) / 255 - np.float32(mean)) / np.float32(std)
    return x.transpose(0, 3, 1, 2) if layout == "NCHW" else x


# --- spec ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name, resize, crop, mean, std, passthrough",
    [
        ("imagenet", 256, 224, IMAGENET_MEAN, IMAGENET_STD, False),
        ("cifar10", None, None, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), False),
        ("none", None, None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), True),
    ],
)
def test_presets(name, resize, crop, mean, std, passthrough):
    pre = Preprocess.preset(name)
    assert (pre.resize, pre.crop, pre.mean, pre.std, pre.passthrough) == (resize, crop, mean, std, passthrough)
    assert (pre.layout, pre.dtype, pre.scale) == ("NCHW", "float32", not passthrough)


def test_preset_overrides_and_report():
    pre = Preprocess.preset("imagenet", crop=200, mean=[0.5, 0.5, 0.5], input_name="x")
    assert (pre.resize, pre.crop, pre.mean, pre.input_name) == (256, 200, (0.5, 0.5, 0.5), "x")
    spec = DataSpec("d.npz", preprocess=pre, limit=5)
    report = json.loads(json.dumps(spec.to_dict()))
    assert report["preprocess"]["crop"] == 200 and report["limit"] == 5 and report["labels_key"] == "labels"
    assert DataSpec("d.npz").preprocess == Preprocess()
    assert DataSpec(Path("d.npz")).path == "d.npz"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Preprocess.preset("vgg"), "unknown preprocess preset"),
        (lambda: Preprocess.preset("none", mean=(0.5,)), "takes no resize"),
        (lambda: Preprocess.preset("none", layout="NHWC"), "takes no resize"),
        (lambda: Preprocess(crop=0), "crop must be a positive"),
        (lambda: Preprocess(std=(1.0, 0.0, 1.0)), "std no zero"),
        (lambda: Preprocess(layout="CHW"), "layout must be"),
        (lambda: Preprocess(dtype="int8"), "float type"),
        (lambda: Preprocess(dtype="nonsense"), "float type"),
        (lambda: DataSpec("d", limit=0), "limit must be"),
        (lambda: DataSpec("d", split=1.0), "split must be"),
        (lambda: DataSpec("d", split_part="train"), "split_part must be"),
    ],
)
def test_bad_settings(make, message):
    with pytest.raises(OnnxcarError, match=message):
        make()


# --- npz ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stored", ["NHWC", "NCHW"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_npz_uint8_layouts(tmp_path, stored, layout):
    raw = pixels(4)
    images = raw if stored == "NHWC" else raw.transpose(0, 3, 1, 2)
    path = npz(tmp_path, images=images, labels=np.arange(4))
    ds = load_dataset(DataSpec(path, preprocess=Preprocess.preset("imagenet", resize=None, crop=None, layout=layout)))
    assert ds.images.dtype == np.float32 and ds.images.flags.c_contiguous
    np.testing.assert_allclose(ds.images, expected(raw, IMAGENET_MEAN, IMAGENET_STD, layout), rtol=1e-5, atol=1e-5)
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 1, 2, 3]


def test_npz_grayscale_resize_crop(tmp_path):
    raw = pixels(3, 10, 14, c=1)[..., 0]  # (N, H, W)
    path = npz(tmp_path, images=raw, labels=np.zeros(3, np.uint8))
    ds = load_dataset(DataSpec(path, preprocess=Preprocess(resize=5, crop=4, mean=(0.5,), std=(0.25,))))
    assert ds.images.shape == (3, 1, 4, 4)
    small = np.asarray(Image.fromarray(raw[0]).resize((7, 5), Image.BILINEAR))[None, 0:4, 2:6, None]
    np.testing.assert_allclose(ds.images[:1], expected(small, (0.5,), (0.25,)), atol=1e-6)


def test_npz_float_passthrough_untouched(tmp_path):
    images = np.random.default_rng(1).normal(size=(5, 3, 4, 4)).astype(np.float16)
    ds = load_dataset(DataSpec(npz(tmp_path, images=images, labels=np.arange(5)), preprocess=Preprocess.preset("none")))
    assert ds.images.dtype == np.float16 and np.array_equal(ds.images, images)


@pytest.mark.parametrize(
    "arrays, spec, message",
    [
        ({"x": pixels(2)}, {}, r"no array 'images'; it holds: x"),
        ({"images": pixels(2), "y": np.arange(2)}, {}, r"no array 'labels'; it holds: images, y"),
        ({"images": pixels(2), "labels": np.arange(3)}, {}, "3 labels .* for 2 images"),
        ({"images": pixels(2), "labels": np.array(["a", "b"])}, {}, "expected integer class ids"),
        ({"images": np.zeros((0, 8, 8, 3), np.uint8)}, {"labels_key": None}, "no images in"),
        ({"images": np.zeros((2, 5, 7, 9), np.uint8)}, {"labels_key": None}, "cannot tell the channel axis"),
        ({"images": np.zeros((2, 3, 4, 4), np.float32)}, {"labels_key": None}, "are float32, not uint8"),
        ({"images": pixels(2, 8, 8)}, {"labels_key": None, "preprocess": Preprocess(crop=9)}, "crop 9 is larger"),
        ({"images": pixels(2), "labels": np.arange(2)}, {"split": 0.1}, "leaves one part empty"),
    ],
)
def test_npz_errors(tmp_path, arrays, spec, message):
    with pytest.raises(OnnxcarError, match=message):
        load_dataset(DataSpec(npz(tmp_path, **arrays), **spec))


def test_no_labels(tmp_path):
    ds = load_dataset(DataSpec(npz(tmp_path, images=pixels(3)), labels_key=None))
    assert ds.labels is None and ds.images.shape == (3, 3, 8, 8)
    assert [labels for _, labels in ds.batches(2)] == [None, None]


@pytest.mark.parametrize(
    "path, message",
    [
        ("missing.npz", "data not found"),
        ("notes.txt", "unsupported data file"),
        ("bad.npz", "cannot read .* as .npz"),
        ("one.npz", "single .npy array"),
    ],
)
def test_bad_paths(tmp_path, path, message):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with open(tmp_path / "one.npz", "wb") as f:
        np.save(f, pixels(1))
    with pytest.raises(OnnxcarError, match=message):
        load_dataset(DataSpec(str(tmp_path / path)))


# --- image folders and archives -----------------------------------------------------------------

def test_folder_sorted_classes_and_files(tmp_path):
    written = tree(tmp_path / "root", {"dog": 2, "cat": 3, "ant": 1})
    (tmp_path / "root" / ".hidden").mkdir()
    ds = load_dataset(DataSpec(str(tmp_path / "root"), preprocess=Preprocess.preset("cifar10")))
    assert ds.classes == ["ant", "cat", "dog"]
    assert ds.labels.tolist() == [0, 1, 1, 1, 2, 2]
    raw = np.concatenate([written["ant"], written["cat"], written["dog"]])
    mean, std = Preprocess.preset("cifar10").mean, Preprocess.preset("cifar10").std
    np.testing.assert_allclose(ds.images, expected(raw, mean, std), rtol=1e-5, atol=1e-5)


def test_folder_resize_shorter_side(tmp_path):
    tree(tmp_path, {"a": 2}, h=30, w=40)
    ds = load_dataset(DataSpec(str(tmp_path), preprocess=Preprocess(resize=20)))
    assert ds.images.shape == (2, 3, 20, 26)
    ds = load_dataset(DataSpec(str(tmp_path), preprocess=Preprocess(resize=20, crop=16, layout="NHWC")))
    assert ds.images.shape == (2, 16, 16, 3)


def test_folder_passthrough_gives_raw_pixels(tmp_path):
    written = tree(tmp_path, {"a": 2})
    ds = load_dataset(DataSpec(str(tmp_path), preprocess=Preprocess.preset("none")))
    assert ds.images.dtype == np.uint8 and np.array_equal(ds.images, written["a"])


def _corrupt(folder):
    (folder / "a" / "001.png").write_bytes(b"not an image")


def _truncated(folder):
    data = (folder / "a" / "001.png").read_bytes()
    (folder / "a" / "001.png").write_bytes(data[: len(data) // 2])


def _resized(folder):
    Image.fromarray(pixels(1, 9, 8)[0]).save(folder / "a" / "001.png")


@pytest.mark.parametrize(
    "damage, message",
    [
        (_corrupt, r"cannot read image .*a/001\.png"),
        (_truncated, r"cannot read image .*a/001\.png"),
        (_resized, r"differ in size.*a/000\.png is 8x8, .*a/001\.png is 8x9"),
    ],
)
def test_folder_bad_images(tmp_path, damage, message):
    tree(tmp_path, {"a": 3})
    damage(tmp_path)
    with pytest.raises(OnnxcarError, match=message):
        load_dataset(DataSpec(str(tmp_path), preprocess=Preprocess.preset("cifar10")))


def test_folder_without_classes_or_images(tmp_path):
    Image.fromarray(pixels(1)[0]).save(tmp_path / "flat.png")
    with pytest.raises(OnnxcarError, match="no class folders"):
        load_dataset(DataSpec(str(tmp_path)))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(OnnxcarError, match="no images in"):
        load_dataset(DataSpec(str(tmp_path)))


@pytest.mark.parametrize("name, arcname", [("d.tar", "."), ("d.tar.gz", "test"), ("d.tgz", "a/b")])
def test_archive_matches_folder(tmp_path, name, arcname):
    tree(tmp_path / "root", {"x": 2, "y": 1})
    spec = DataSpec(str(tmp_path / "root"), preprocess=Preprocess.preset("cifar10"))
    archive = tar_of(tmp_path / "root", tmp_path / name, arcname)
    from_folder = load_dataset(spec)
    from_tar = load_dataset(DataSpec(archive, preprocess=spec.preprocess))
    assert from_tar.classes == ["x", "y"] and np.array_equal(from_tar.images, from_folder.images)
    assert np.array_equal(from_tar.labels, from_folder.labels)


def _member(tar, name, kind=tarfile.REGTYPE, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, 0 if target else 4
    tar.addfile(info, None if target else io.BytesIO(b"evil"))


@pytest.mark.parametrize(
    "name, kind, target, why",
    [
        ("../evil", tarfile.REGTYPE, "", "path leaves the archive"),
        ("a/../../evil", tarfile.REGTYPE, "", "path leaves the archive"),
        ("/tmp/evil", tarfile.REGTYPE, "", "absolute path"),
        ("a/link", tarfile.SYMTYPE, "/etc/passwd", "link"),
        ("a/hard", tarfile.LNKTYPE, "a/x.png", "link"),
        ("a/fifo", tarfile.FIFOTYPE, "", "not a regular file"),
    ],
)
def test_archive_unsafe_members(tmp_path, name, kind, target, why):
    archive = tmp_path / "in" / "d.tar"
    archive.parent.mkdir()
    with tarfile.open(archive, "w") as tar:
        _member(tar, "a/x.png")
        _member(tar, name, kind, target)
    with pytest.raises(OnnxcarError, match=rf"unsafe member .* \({why}"):
        load_dataset(DataSpec(str(archive)))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "in" / "evil").exists()
    assert not (tmp_path / "cache").exists()  # nothing unpacked anywhere


def test_corrupt_archive(tmp_path):
    (tmp_path / "d.tgz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(OnnxcarError, match="cannot read archive"):
        load_dataset(DataSpec(str(tmp_path / "d.tgz")))


# --- hostile archives and images (issue 13, items 7, 8, 9, 15, 16) -----------------------------------

def _files_under(folder):
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.parametrize("damage", [None, _corrupt], ids=["good", "bad-image"])
def test_archive_is_read_in_place_and_a_failed_run_leaves_nothing(tmp_path, damage):
    tree(tmp_path / "root", {"a": 3})
    if damage:
        damage(tmp_path / "root")
    archive = tar_of(tmp_path / "root", tmp_path / "d.tar.gz", "top")
    spec = DataSpec(archive, preprocess=Preprocess.preset("none"))
    if damage:
        with pytest.raises(OnnxcarError, match=r"cannot read image .*d\.tar\.gz:top/a/001\.png"):
            load_dataset(spec)
    else:
        assert len(load_dataset(spec)) == 3
    assert _files_under(tmp_path / "cache") == []


def _zeros_member(tar, name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    tar.addfile(info, io.BytesIO(bytes(size)))


def _bomb(archive):
    """A .tar.gz of about 6 KB that unpacks to 6 MB."""
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(3):
            _zeros_member(tar, f"a/{i}.png", 2_000_000)


def _many(archive):
    with tarfile.open(archive, "w") as tar:
        for i in range(5):
            _zeros_member(tar, f"a/{i}.png", 10)


@pytest.mark.parametrize(
    "make, limits, message",
    [
        (_bomb, {"archive_max_bytes": 5_000_000}, "unpacks to more than 5000000 bytes (archive_max_bytes)"),
        (_many, {"archive_max_files": 4}, "holds more than 4 members (archive_max_files)"),
    ],
    ids=["bytes", "files"],
)
def test_archive_limits_bound_bytes_and_members(tmp_path, make, limits, message):
    archive = tmp_path / "d.tgz"
    make(archive)
    assert archive.stat().st_size <= 10_240  # one tar record
    with pytest.raises(OnnxcarError, match=re.escape(f"{archive} {message}")):
        load_dataset(DataSpec(str(archive), preprocess=Preprocess.preset("none"), **limits))
    raised = {k: 2 * v for k, v in limits.items()}  # within the limit, the archive is read (and its zeros refused)
    with pytest.raises(OnnxcarError, match="cannot read image"):
        load_dataset(DataSpec(str(archive), preprocess=Preprocess.preset("none"), **raised))
    assert _files_under(tmp_path / "cache") == []


def test_archive_limit_defaults():
    spec = DataSpec("d.tar")
    assert (spec.archive_max_files, spec.archive_max_bytes) == (1_000_000, 64 * 2**30)
    for name in ("archive_max_files", "archive_max_bytes"):
        with pytest.raises(OnnxcarError, match=f"{name} must be at least 1"):
            DataSpec("d.tar", **{name: 0})


def _gz_spoiled(data: bytes, where: str) -> bytes:
    """A gzip file with its CRC-32 or length trailer changed, or its last bytes cut off."""
    if where == "truncated":
        return data[:-4]
    position = len(data) - (8 if where == "crc" else 4)
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1:]


@pytest.mark.parametrize(
    "where, reason",
    [("crc", "CRC check failed"), ("length", "Incorrect length"), ("truncated", "ended before the end-of-stream")],
)
def test_corrupt_gzip_is_refused(tmp_path, where, reason):
    tree(tmp_path / "root", {"a": 2})
    archive = Path(tar_of(tmp_path / "root", tmp_path / "d.tar.gz", "."))
    archive.write_bytes(_gz_spoiled(archive.read_bytes(), where))
    with pytest.raises(OnnxcarError, match=f"cannot read archive {re.escape(str(archive))}: .*{reason}"):
        load_dataset(DataSpec(str(archive), preprocess=Preprocess.preset("none")))


def test_rebuilt_archive_with_the_same_size_and_mtime_serves_the_new_images(tmp_path):
    archive = tmp_path / "d.tar"
    stamps = None
    for seed in (0, 1):
        written = {}
        for k, name in enumerate(("a", "b")):
            (tmp_path / "root" / name).mkdir(parents=True, exist_ok=True)
            written[name] = pixels(2, seed=10 * seed + k)
            for i, img in enumerate(written[name]):
                Image.fromarray(img).save(tmp_path / "root" / name / f"{i}.bmp")  # BMP: same size for any pixels
        tar_of(tmp_path / "root", archive, ".")
        if stamps is None:
            stamps = archive.stat()
        else:
            os.utime(archive, ns=(stamps.st_atime_ns, stamps.st_mtime_ns))
            assert (archive.stat().st_size, archive.stat().st_mtime_ns) == (stamps.st_size, stamps.st_mtime_ns)
        ds = load_dataset(DataSpec(str(archive), preprocess=Preprocess.preset("none")))
        assert np.array_equal(ds.images, np.concatenate([written["a"], written["b"]]))


def _png16(path, value):
    Image.fromarray(np.full((4, 4), value, np.uint16)).save(path)  # Pillow opens it as mode I;16


def _pgm16(path, value):
    path.write_bytes(b"P5 4 4 65535\n" + np.full(16, value, ">u2").tobytes())  # Pillow opens it as mode I


def _tiff(dtype):
    def save(path, value):
        Image.fromarray(np.full((4, 4), value, dtype)).save(path)
    return save


@pytest.mark.parametrize("save, suffix", [(_png16, "png"), (_pgm16, "pgm")], ids=["png", "pgm"])
def test_sixteen_bit_images_are_scaled_to_eight_bits(tmp_path, save, suffix):
    (tmp_path / "a").mkdir()
    for i, value in enumerate((25_700, 65_535, 128)):  # 25,700 / 257 = 100; 128 / 257 rounds to 0
        save(tmp_path / "a" / f"{i}.{suffix}", value)
    ds = load_dataset(DataSpec(str(tmp_path), preprocess=Preprocess.preset("none")))
    assert ds.images.dtype == np.uint8 and ds.images.shape == (3, 4, 4, 3)
    assert ds.images[:, 0, 0, 0].tolist() == [100, 255, 0] and len(np.unique(ds.images.reshape(3, -1), axis=1)) == 3


@pytest.mark.parametrize("dtype, kind", [(np.float32, "mode F"), (np.int32, "mode I")], ids=["float", "int32"])
def test_float_and_32_bit_images_are_refused(tmp_path, dtype, kind):
    (tmp_path / "a").mkdir()
    _tiff(dtype)(tmp_path / "a" / "0.tiff", 0.5 if dtype == np.float32 else 70_000)
    with pytest.raises(OnnxcarError, match=rf"cannot read image .*0\.tiff: {kind} pixels have no fixed range"):
        load_dataset(DataSpec(str(tmp_path), preprocess=Preprocess.preset("none")))


def test_crafted_dds_image_is_a_user_error(tmp_path):
    tree(tmp_path, {"a": 1})
    (tmp_path / "a" / "x.dds").write_bytes(dds())
    with pytest.raises(OnnxcarError, match=r"cannot read image .*x\.dds: Unimplemented pixel format"):
        load_dataset(DataSpec(str(tmp_path), preprocess=Preprocess.preset("none")))


def _chain(top: Path, depth: int) -> Path:
    """Makes top/d/d/.../d, ``depth`` levels, one relative step at a time (full paths would cost depth squared)."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    return top.joinpath(*["d"] * depth)


def _unchain(deep: Path, depth: int) -> None:
    """Removes what _chain made, and the files in its deepest folder, bottom-up and without recursion."""
    fd = os.open(deep, os.O_RDONLY)
    for name in os.listdir(fd):
        os.unlink(name, dir_fd=fd)
    for _ in range(depth):
        parent = os.open("..", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        os.rmdir("d", dir_fd=parent)
        fd = parent
    os.close(fd)


def test_deeply_nested_folder(tmp_path):
    root = tmp_path / "root"
    tree(root, {"a": 1, "b": 1})
    deep = _chain(root / "a", 1100)  # deeper than Python's recursion limit
    Image.fromarray(pixels(1)[0]).save(deep / "x.png")
    try:
        ds = load_dataset(DataSpec(str(root), preprocess=Preprocess.preset("none")))
        assert ds.classes == ["a", "b"] and ds.labels.tolist() == [0, 0, 1]
    finally:  # pytest's own clean-up recurses per level
        _unchain(deep, 1100)


def test_deeply_nested_archive(tmp_path):
    png = io.BytesIO()
    Image.fromarray(pixels(1)[0]).save(png, format="png")
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w") as tar:  # files only, no folder members, as in many tars
        for name in ("top/a/0.png", "top/a/" + "d/" * 1100 + "x.png", "top/b/0.png"):
            info = tarfile.TarInfo(name)
            info.size = len(png.getvalue())
            tar.addfile(info, io.BytesIO(png.getvalue()))
    ds = load_dataset(DataSpec(str(archive), preprocess=Preprocess.preset("none")))
    assert ds.classes == ["a", "b"] and ds.labels.tolist() == [0, 0, 1]


def npy_bytes(array, version=None) -> bytes:
    """``array`` as an .npy file, its format version byte pair replaced by ``version``."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    out = buffer.getvalue()
    return out if version is None else out[:6] + bytes(version) + out[8:]


GOOD_NPY = npy_bytes(np.zeros((2, 3, 2, 2), np.float32))


@pytest.mark.parametrize(
    "members, fragment",
    [
        ({"images": GOOD_NPY}, "cannot read array 'images' of .*: it is not .npy data"),
        ({"images.npy": b"XX" + GOOD_NPY[2:]}, "cannot read array 'images' of .*: the magic string is not correct"),
        ({"images.npy": npy_raw("{'descr': '<f4'}")}, "cannot read array 'images' of .*: Header does not"),
        ({"images.npy": npy_raw("{nonsense: 1}")}, r"cannot read array 'images' of .*d\.npz: "),
        ({"images.npy": npy_bytes(np.zeros(2), version=(9, 0))}, "cannot read array 'images' of .*format version"),
        ({"images.npy": npy_bytes(np.float32(1))}, "array 'images' of .* is a single value"),
        ({"images.npy": GOOD_NPY, "labels.npy": npy_bytes(np.int64(1))}, "array 'labels' of .* is a single value"),
        ({"images.npy": npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 3, 2, 2)}", bytes(48))},
         r"cannot read array 'images' of .*: its header declares shape \(100000000000, 3, 2, 2\) "
         r"\(4800000000000 bytes\), the file holds 48"),
    ],
    ids=["not-npy", "magic", "header-keys", "header-syntax", "version", "0-d", "0-d-labels", "huge-shape"],
)
def test_damaged_npz_members_are_user_errors(tmp_path, members, fragment):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(OnnxcarError, match=fragment):
        load_dataset(DataSpec(str(path), preprocess=Preprocess.preset("none")))
    if "'images'" in fragment and "single value" not in fragment:  # the CLI reads the dtype from the header first
        with pytest.raises(OnnxcarError, match=fragment):
            npz_dtype(path, "images")


# --- selection ----------------------------------------------------------------------------------

def coded(tmp_path, labels):
    """A float npz whose image i is filled with i, so selections can be read back."""
    images = np.arange(len(labels), dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    return npz(tmp_path, images=images, labels=np.asarray(labels))


def picked(ds):
    return ds.images[:, 0, 0, 0].astype(int).tolist()


def test_limit_is_deterministic_stratified_and_ordered(tmp_path):
    path = coded(tmp_path, np.repeat(np.arange(4), 10))  # sorted by class, like a folder
    none = Preprocess.preset("none")
    first, again = (load_dataset(DataSpec(path, preprocess=none, limit=8, seed=3)) for _ in range(2))
    assert picked(first) == picked(again) and picked(first) == sorted(picked(first))
    assert np.bincount(first.labels).tolist() == [2, 2, 2, 2]
    assert picked(load_dataset(DataSpec(path, preprocess=none, limit=8, seed=4))) != picked(first)


def test_limit_plain_shuffle_for_float_targets(tmp_path):
    path = coded(tmp_path, np.linspace(0, 1, 30))
    ds = load_dataset(DataSpec(path, preprocess=Preprocess.preset("none"), limit=10))
    assert ds.labels.dtype.kind == "f" and len(ds) == 10 and picked(ds) != list(range(10))


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=2, max_size=60),
    split=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
    limit=st.none() | st.integers(1, 80),
)
def test_split_parts_partition(labels, split, seed, limit):
    labels = np.asarray(labels)
    if not 0 < round(split * len(labels)) < len(labels):
        return
    held = select_indices(len(labels), labels, DataSpec("d", split=split, seed=seed))
    rest = select_indices(len(labels), labels, DataSpec("d", split=split, seed=seed, split_part="rest"))
    assert np.array_equal(np.sort(np.concatenate([held, rest])), np.arange(len(labels)))
    assert len(held) == round(split * len(labels))
    for cls in np.unique(labels):  # stratified: each class keeps its share, within about one item
        assert abs(np.sum(labels[held] == cls) - len(held) / len(labels) * np.sum(labels == cls)) <= 1.5
    limited = select_indices(len(labels), labels, DataSpec("d", split=split, seed=seed, limit=limit))
    assert set(limited) <= set(held) and len(limited) == min(limit or len(held), len(held))


# --- Dataset ------------------------------------------------------------------------------------

def small_ds(n=5, labels=True):
    images = np.arange(n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    return Dataset(images, np.arange(n) % 3 if labels else None, None, DataSpec("mem"))


def test_batches_in_order():
    ds = small_ds()
    batches = list(ds.batches(2))
    assert [len(b) for b, _ in batches] == [2, 2, 1]
    assert np.array_equal(np.concatenate([b for b, _ in batches]), ds.images)
    assert np.concatenate([labels for _, labels in batches]).tolist() == ds.labels.tolist()
    with pytest.raises(OnnxcarError, match="batch size"):
        next(ds.batches(0))


def test_with_labels_agreement_mode():
    ds = small_ds(labels=False)
    top1 = np.array([4, 3, 2, 1, 0], dtype=np.int32)
    agreed = ds.with_labels(top1)
    assert agreed.labels.dtype == np.int64 and agreed.labels.tolist() == [4, 3, 2, 1, 0]
    assert agreed.images is ds.images and ds.labels is None
    with pytest.raises(OnnxcarError, match="4 labels for 5 images"):
        ds.with_labels(top1[:4])


def test_subset():
    ds = small_ds()
    sub = ds.subset([3, 1])
    assert np.array_equal(sub.images, ds.images[[3, 1]]) and sub.labels.tolist() == [0, 1]
    assert sub.images.flags.c_contiguous and len(ds.subset(ds.labels == 0)) == 2


# --- validate_for_model -------------------------------------------------------------------------

def _images(ds, images):
    return Dataset(images, ds.labels, ds.classes, ds.spec)


@pytest.mark.parametrize(
    "change, shape, dtype, outputs, task, message",
    [
        (lambda ds: ds.subset([]), ["N", 1, 2, 2], "float32", 3, "classification", "empty"),
        (lambda ds: ds, ["N", 1, 4], "float32", 3, "classification", r"shaped \(5, 1, 2, 2\).*\[N, 1, 4\]"),
        (lambda ds: ds, [None, 3, 2, 2], "float32", 3, "classification", r"takes \[\?, 3, 2, 2\]"),
        (lambda ds: ds, ["N", 1, 2, 2], "float16", 3, "classification", "images are float32 .* takes float16"),
        (lambda ds: ds, ["N", 1, 2, 2], "tensor(double)", 3, "classification", "takes float64"),
        (lambda ds: _images(ds, np.where(np.arange(20).reshape(5, 1, 2, 2) == 13, np.nan, 0).astype(np.float32)),
         ["N", 1, 2, 2], "float32", 3, "classification", "NaN or Inf .*image 3"),
        (lambda ds: _images(ds, np.full((5, 1, 2, 2), np.inf, np.float32)),
         ["N", 1, 2, 2], "float32", 3, "classification", "NaN or Inf .*image 0"),
        (lambda ds: ds, ["N", 1, 2, 2], "float32", 2, "classification", r"\[0, 2\] .* in \[0, 2\)"),
        (lambda ds: ds.with_labels(np.array([0, -1, 0, 0, 0])), ["N", 1, 2, 2], "float32", None, "classification",
         "non-negative"),
        (lambda ds: ds.with_labels(np.zeros(5, np.float32)), ["N", 1, 2, 2], "float32", 3, "classification",
         "one integer class id"),
        (lambda ds: ds.with_labels(np.zeros((5, 3), np.int64)), ["N", 1, 2, 2], "float32", 3, "classification",
         "one integer class id"),
        (lambda ds: ds.with_labels(np.zeros((5, 2), np.float32)), ["N", 1, 2, 2], "float32", 3, "regression",
         "3 outputs"),
    ],
)
def test_validate_errors(change, shape, dtype, outputs, task, message):
    with pytest.raises(OnnxcarError, match=message):
        validate_for_model(change(small_ds()), shape, dtype, outputs, task)


@pytest.mark.parametrize(
    "shape, dtype, outputs, task",
    [
        (["N", 1, 2, 2], "float32", 3, "classification"),
        ([8, "h", None, 2], "tensor(float)", None, "classification"),  # batch and dynamic dims are free
        (["N", 1, 2, 2], "float32", 1, "regression"),
    ],
)
def test_validate_accepts(shape, dtype, outputs, task, caplog):
    validate_for_model(small_ds(), shape, dtype, outputs, task)
    assert caplog.records == []


@pytest.mark.parametrize(
    "ds, message",
    [
        (small_ds().with_labels(np.ones(5, np.int64)), "all 5 labels are class 1"),
        (Dataset(np.full((2, 1, 2, 2), 200.0, np.float32), None, None,
                 DataSpec("d", preprocess=Preprocess.preset("none"))), "raw pixels"),
        (Dataset(np.zeros((2, 1, 2, 2), np.float32), np.array([0, 1]), ["cat", "dog"], DataSpec("d")),
         "2 class folders but the model 3 outputs"),
    ],
)
def test_validate_warnings(ds, message, caplog):
    with caplog.at_level(logging.WARNING, logger="onnxcar.data"):
        validate_for_model(ds, ["N", 1, 2, 2], "float32", 3)
    assert message in caplog.text


# --- CLI options --------------------------------------------------------------------------------

@click.command()
@data_options(required=False)
@output_options
@click.option("--batch-size", type=int, default=1)
def show(data_spec, output, force, as_json, batch_size):
    click.echo(json.dumps({"spec": data_spec and data_spec.to_dict(), "output": output and str(output),
                           "force": force, "json": as_json, "batch_size": batch_size}))


def invoke(*args):
    result = CliRunner().invoke(show, list(args))
    return result, json.loads(result.output) if result.exit_code == 0 else None


def test_cli_defaults_to_none_for_float_npz(tmp_path):
    path = npz(tmp_path, images=np.zeros((2, 3, 4, 4), np.float32), labels=np.arange(2))
    _, out = invoke("--data", path, "--limit", "1", "-o", "r.json", "--force", "--json", "--batch-size", "4")
    assert out["spec"]["preprocess"]["passthrough"] and out["spec"]["limit"] == 1
    assert (out["output"], out["force"], out["json"], out["batch_size"]) == ("r.json", True, True, 4)


def test_cli_overrides(tmp_path):
    path = npz(tmp_path, images=pixels(2))
    _, out = invoke("--data", path, "--preprocess", "imagenet", "--crop", "200", "--mean", "0.5,0.5,0.5",
                    "--layout", "nhwc", "--no-labels", "--split", "0.5", "--seed", "7",
                    "--archive-max-files", "10", "--archive-max-bytes", "2G")
    pre = out["spec"]["preprocess"]
    assert (pre["resize"], pre["crop"], pre["mean"], pre["std"], pre["layout"]) == (
        256, 200, [0.5, 0.5, 0.5], list(IMAGENET_STD), "NHWC")
    assert (out["spec"]["labels_key"], out["spec"]["split"], out["spec"]["seed"]) == (None, 0.5, 7)
    assert (out["spec"]["archive_max_files"], out["spec"]["archive_max_bytes"]) == (10, 2 * 2**30)


def test_cli_without_data():
    _, out = invoke()
    assert out["spec"] is None and out["output"] is None and not out["json"]


@pytest.mark.parametrize(
    "make, args, error",
    [
        (lambda p: npz(p, images=pixels(2)), [], "holds uint8 images: choose a preprocessing"),
        (lambda p: tree(p / "t", {"a": 1}) and str(p / "t"), [], "holds image files"),
        (lambda p: npz(p, x=pixels(2)), [], "no array 'images'; it holds: x"),
        (lambda p: None, ["--limit", "3"], "--limit needs --data"),
        (lambda p: npz(p, images=pixels(2)), ["--preprocess", "none", "--mean", "0.5"], "takes no resize"),
    ],
)
def test_cli_errors(tmp_path, make, args, error):
    path = make(tmp_path)
    result, _ = invoke(*(["--data", path] if path else []), *args)
    assert isinstance(result.exception, OnnxcarError) and error in str(result.exception)


@pytest.mark.parametrize("args", [["--mean", "a,b"], ["--split", "1.5"], ["--limit", "0"], ["--data", "nope.npz"],
                                  ["--archive-max-bytes", "2X"], ["--archive-max-files", "0"]])
def test_cli_usage_errors(args):
    result, _ = invoke(*args)
    assert result.exit_code == 2 and "Invalid value" in result.output
