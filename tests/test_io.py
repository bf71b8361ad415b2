"""Tests for onnxcar.io; test names carry the RELIABILITY item they cover (r1 to r10)."""

import os
import pathlib
import re
import socket
import threading
import tracemalloc

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import uses_external_data

from onnxcar import io
from onnxcar.errors import OnnxcarError

W = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)


def conv_model(*, opset=17, ir=10, extra_nodes=(), extra_opsets=()) -> onnx.ModelProto:
    """x[batch,3,4,4] -> Conv(w) -> y, plus ``extra_nodes`` chained after y (last output is ``z``)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]), *extra_nodes]
    output = "z" if extra_nodes else "y"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 2, 2, 2])],
        [numpy_helper.from_array(W, "w")],
    )
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir)


GOOD = conv_model().SerializeToString()


def flip(data: bytes, position: int, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[position] ^= 1 << bit
    return bytes(flipped)


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def write(model: onnx.ModelProto, path):
    return write_bytes(path, model.SerializeToString())


def external_model(folder, location, offset=None, length=None):
    """folder/model.onnx whose weight ``w`` lives in external data with these raw entries."""
    model = conv_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            w.external_data.add(key=key, value=str(value))
    return write(model, folder / "model.onnx")


def load_error(path, **kwargs) -> str:
    with pytest.raises(OnnxcarError) as info:
        io.load_model(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_external_data_resolves_relative_to_model_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "w.bin").write_bytes(b"pad!" + W.tobytes())
    path = external_model(tmp_path, "sub/w.bin", offset=4, length=W.nbytes)
    monkeypatch.chdir("/")
    model = io.load_model(path)
    w = model.graph.initializer[0]
    assert not uses_external_data(w)
    np.testing.assert_array_equal(numpy_helper.to_array(w), W)


def test_load_external_false_keeps_references_and_save_refuses_them(tmp_path):
    (tmp_path / "w.bin").write_bytes(W.tobytes())
    model = io.load_model(external_model(tmp_path, "w.bin"), load_external=False)
    assert uses_external_data(model.graph.initializer[0])
    with pytest.raises(OnnxcarError, match="external data was not loaded"):
        io.save_model(model, tmp_path / "out.onnx")


@pytest.mark.parametrize("location", ["../w.bin", "a/../../w.bin", "a\\..\\..\\w.bin", "/etc/passwd", "C:/w.bin", ""])
def test_r1_external_location_outside_model_folder_rejected(tmp_path, location):
    folder = tmp_path / "m"
    (folder / "a").mkdir(parents=True)
    (tmp_path / "w.bin").write_bytes(W.tobytes())  # a naive loader would find and read it
    message = load_error(external_model(folder, location, length=W.nbytes))
    assert "not a relative path inside the model's folder" in message


def test_r2_symlinked_external_file_rejected(tmp_path):
    (tmp_path / "real.bin").write_bytes(W.tobytes())
    (tmp_path / "w.bin").symlink_to(tmp_path / "real.bin")
    assert f"{tmp_path / 'w.bin'} is a symbolic link" in load_error(external_model(tmp_path, "w.bin"))


def test_r2_symlinked_external_folder_rejected(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "w.bin").write_bytes(W.tobytes())
    (tmp_path / "d").symlink_to(tmp_path / "real", target_is_directory=True)
    assert f"{tmp_path / 'd'} is a symbolic link" in load_error(external_model(tmp_path, "d/w.bin"))


def test_r2_hardlinked_external_file_rejected(tmp_path):
    (tmp_path / "w.bin").write_bytes(W.tobytes())
    os.link(tmp_path / "w.bin", tmp_path / "other.bin")
    assert "'w.bin': the file has hard links" in load_error(external_model(tmp_path, "w.bin"))


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        ("-1", None),
        (None, "-4"),
        ("1.5", None),
        (None, "abc"),
        (None, "1e3"),
        (" 0", None),
        ("9" * 5000, None),
        (None, "99999999999999999999"),
        ("0", str(10**18)),
        (str(W.nbytes), "4"),
        (str(W.nbytes + 1), None),
    ],
)
def test_r3_bad_external_offset_or_length_rejected_without_allocation(tmp_path, offset, length):
    (tmp_path / "w.bin").write_bytes(W.tobytes())
    path = external_model(tmp_path, "w.bin", offset=offset, length=length)
    tracemalloc.start()
    try:
        message = load_error(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "external data 'w.bin'" in message
    assert peak < 1_000_000


def test_r4_inline_raw_data_of_wrong_size_rejected(tmp_path):
    model = conv_model()
    model.graph.initializer[0].raw_data += b"\0" * 4
    message = load_error(write(model, tmp_path / "m.onnx"))
    assert f"holds {W.nbytes + 4} bytes" in message


def test_r4_external_raw_data_of_wrong_size_rejected(tmp_path):
    (tmp_path / "w.bin").write_bytes(W.tobytes())
    message = load_error(external_model(tmp_path, "w.bin", length=W.nbytes - 4))
    assert f"holds {W.nbytes - 4} bytes, its shape and type need {W.nbytes}" in message


@pytest.mark.parametrize(
    ("dtype", "dims", "nbytes", "ok"),
    [
        (TensorProto.INT4, [3], 2, True),
        (TensorProto.INT4, [3], 3, False),
        (TensorProto.FLOAT16, [3], 6, True),
        (TensorProto.FLOAT16, [3], 8, False),
        (TensorProto.INT64, [2, 0], 0, True),
    ],
)
def test_r4_raw_size_follows_dtype_width(tmp_path, dtype, dims, nbytes, ok):
    model = conv_model()
    model.graph.initializer.append(TensorProto(name="q", data_type=dtype, dims=dims, raw_data=b"\0" * nbytes))
    path = write(model, tmp_path / "m.onnx")
    if ok:
        assert io.load_model(path).graph.initializer[-1].raw_data == b"\0" * nbytes
    else:
        assert "tensor 'q' holds" in load_error(path)


@pytest.mark.parametrize("name", ["c", "s"], ids=["attribute", "subgraph"])
def test_r4_raw_size_checked_in_attributes_and_subgraphs(tmp_path, name):
    def tensor(tensor_name):
        t = numpy_helper.from_array(np.ones(2, np.float32), tensor_name)
        if tensor_name == name:
            t.raw_data += b"\0" * 4
        return t

    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])
    branch = helper.make_graph([helper.make_node("Identity", ["s"], ["b"])], "branch", [], [b], [tensor("s")])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    nodes = [
        helper.make_node("Constant", [], ["c"], value=tensor("c")),
        helper.make_node("Constant", [], ["cond"], value=cond),
        helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch),
    ]
    message = load_error(write(conv_model(extra_nodes=nodes), tmp_path / "m.onnx"))
    assert f"tensor {name!r} holds 12 bytes" in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (GOOD[: len(GOOD) // 2], "does not parse"),
        (flip(GOOD, 3, 0), "does not parse"),  # low bit of the graph's length prefix
        (b"this is not a model\n", "does not parse"),
        (bytes(range(256)) * 4, "does not parse"),
        (b"\x08\x07", "no graph"),
        (b"", "empty"),
        (None, "No such file"),
        ("dir", "Is a directory"),
    ],
    ids=["truncated", "bit-flipped", "text", "binary", "no-graph", "empty", "missing", "directory"],
)
def test_r5_broken_file_gives_one_line_error_naming_it(tmp_path, content, reason):
    path = tmp_path / "broken.onnx"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    message = load_error(path)
    assert message.startswith(f"cannot load {path}: ")
    assert reason in message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, len(GOOD) - 1), bit=st.integers(0, 7), truncate=st.booleans())
def test_r5_any_bit_flip_or_truncation_loads_or_raises_onnxcar_error(tmp_path, position, bit, truncate):
    path = write_bytes(tmp_path / "m.onnx", GOOD[:position] if truncate else flip(GOOD, position, bit))
    try:
        assert isinstance(io.load_model(path), onnx.ModelProto)
    except OnnxcarError as err:
        assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("kwargs", "opset_domain", "expected"),
    [
        ({"ir": 99}, None, "IR version 99 is not supported"),
        ({"ir": 2}, None, "IR version 2 is not supported"),
        ({"opset": 6}, None, "default-domain opset 6 is not supported"),
        ({"opset": 99}, None, "default-domain opset 99 is not supported"),
        ({}, helper.make_opsetid("ai.onnx", 99), "default-domain opset 99 is not supported"),
    ],
)
def test_r6_unsupported_ir_or_opset_rejected(tmp_path, kwargs, opset_domain, expected):
    model = conv_model(**kwargs, extra_opsets=[opset_domain] if opset_domain else [])
    assert expected in load_error(write(model, tmp_path / "m.onnx"))


@pytest.mark.parametrize("acme_version", [1, 999])
def test_r6_custom_domain_op_does_not_fail_loading(tmp_path, acme_version):
    foo = helper.make_node("Foo", ["y"], ["z"], domain="com.acme")
    model = conv_model(extra_nodes=[foo], extra_opsets=[helper.make_opsetid("com.acme", acme_version)])
    loaded = io.load_model(write(model, tmp_path / "m.onnx"))
    assert [n.domain for n in loaded.graph.node] == ["", "com.acme"]


def test_r7_large_model_round_trips_through_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD", 0)
    model = conv_model()
    out = io.save_model(model, tmp_path / "out.onnx")
    assert model.graph.initializer[0].raw_data == W.tobytes()  # the caller's model is untouched
    assert sorted(os.listdir(tmp_path)) == ["out.onnx", "out.onnx.data"]
    assert (tmp_path / "out.onnx.data").read_bytes() == W.tobytes()
    on_disk = onnx.load(str(out), load_external_data=False)
    assert uses_external_data(on_disk.graph.initializer[0])
    monkeypatch.chdir("/")
    loaded = io.load_model(out)
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), W)


def test_r7_small_model_saved_inline(tmp_path):
    io.save_model(conv_model(), tmp_path / "out.onnx")
    assert os.listdir(tmp_path) == ["out.onnx"]


def test_r7_external_data_file_not_overwritten_without_force(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD", 0)
    (tmp_path / "out.onnx.data").write_bytes(b"keep")
    with pytest.raises(OnnxcarError, match="exists"):
        io.save_model(conv_model(), tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx.data").read_bytes() == b"keep"


def test_r8_load_npz_round_trip_and_key_selection(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.arange(3), b=np.ones(2))
    assert sorted(io.load_npz(tmp_path / "d.npz")) == ["a", "b"]
    arrays = io.load_npz(tmp_path / "d.npz", "a")
    assert list(arrays) == ["a"]
    np.testing.assert_array_equal(arrays["a"], np.arange(3))
    with pytest.raises(OnnxcarError, match=r"no array 'c' \(it has a, b\)"):
        io.load_npz(tmp_path / "d.npz", "c")


@pytest.mark.parametrize("case", ["pickle", "npy", "garbage", "empty", "missing"])
def test_r8_load_npz_refuses_bad_files(tmp_path, case):
    path = tmp_path / "d.npz"
    if case == "pickle":
        np.savez(path, a=np.array([{"x": 1}], dtype=object))
    elif case == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(2))
    elif case != "missing":
        path.write_bytes({"garbage": b"PK\x03\x04junk", "empty": b""}[case])
    with pytest.raises(OnnxcarError, match=re.escape(f"cannot load {path}: ")):
        io.load_npz(path)


def test_r9_output_equal_to_input_refused(tmp_path):
    source = write(conv_model(), tmp_path / "m.onnx")
    (tmp_path / "sub").mkdir()
    os.link(source, tmp_path / "hard.onnx")
    (tmp_path / "soft.onnx").symlink_to(source)
    for out in [source, tmp_path / "sub" / ".." / "m.onnx", tmp_path / "hard.onnx", tmp_path / "soft.onnx"]:
        with pytest.raises(OnnxcarError, match="it is the input model"):
            io.save_model(conv_model(opset=13), out, force=True, source=source)
    assert source.read_bytes() == conv_model().SerializeToString()


def test_r9_existing_output_needs_force(tmp_path):
    out = write_bytes(tmp_path / "out.onnx", b"old")
    with pytest.raises(OnnxcarError, match="exists"):
        io.check_output_path(out, force=False)
    assert out.read_bytes() == b"old"
    assert io.save_model(conv_model(), out, force=True) == out
    assert out.read_bytes() == conv_model().SerializeToString()


@pytest.mark.parametrize(("name", "expected"), [("missing/out.onnx", "does not exist"), ("folder", "is a folder")])
def test_r9_bad_output_location_refused(tmp_path, name, expected):
    (tmp_path / "folder").mkdir()
    with pytest.raises(OnnxcarError, match=expected):
        io.check_output_path(tmp_path / name, force=True)


@pytest.mark.parametrize(("crash", "raised"), [(OSError(28, "No space left on device"), OnnxcarError), (KeyboardInterrupt(), KeyboardInterrupt)])
def test_r10_crash_mid_save_keeps_old_file_and_no_temp(tmp_path, monkeypatch, crash, raised):
    out = write_bytes(tmp_path / "out.onnx", b"old model")

    def crashing_serialize(model, f):
        f.write(b"partial")
        raise crash

    monkeypatch.setattr(io, "_serialize", crashing_serialize)
    with pytest.raises(raised):
        io.save_model(conv_model(), out, force=True)
    assert out.read_bytes() == b"old model"
    assert os.listdir(tmp_path) == ["out.onnx"]


def test_save_load_keeps_dynamic_batch(tmp_path):
    loaded = io.load_model(io.save_model(conv_model(), tmp_path / "out.onnx"))
    for value in (loaded.graph.input[0], loaded.graph.output[0]):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_checker_rejection_is_onnxcar_error(tmp_path):
    model = conv_model()
    model.graph.node[0].op_type = "Nope"
    assert "the ONNX checker rejects it: No Op registered for Nope" in load_error(write(model, tmp_path / "m.onnx"))


def test_infer_shapes_fills_value_info_and_wraps_failures():
    relu = helper.make_node("Relu", ["y"], ["z"])
    inferred = io.infer_shapes(conv_model(extra_nodes=[relu]))
    (y,) = [v for v in inferred.graph.value_info if v.name == "y"]
    assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["batch", 2, 2, 2]

    bad = conv_model(extra_nodes=[helper.make_node("MatMul", ["y", "m"], ["z"])])
    bad.graph.initializer.append(numpy_helper.from_array(np.ones((5, 2), np.float32), "m"))  # y's last dim is 2
    with pytest.raises(OnnxcarError, match="shape inference failed: .*Incompatible dimensions"):
        io.infer_shapes(bad)


def test_infer_shapes_sees_large_weights_by_type_and_keeps_them_bit_for_bit(monkeypatch):
    model = conv_model(extra_nodes=[helper.make_node("Reshape", ["y", "s"], ["r"]),
                                    helper.make_node("MatMul", ["r", "m"], ["z"])])
    model.graph.initializer.extend([numpy_helper.from_array(np.array([-1, 8], np.int64), "s"),
                                    numpy_helper.from_array(np.arange(8 * 5, dtype=np.float32).reshape(8, 5), "m")])
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    model.producer_name = "test"
    monkeypatch.setattr(io, "SHAPE_ONLY_ELEMENTS", 10)  # w (24 values) and m (40) go in as typed inputs
    light = io.without_weight_data(model)
    assert [t.name for t in light.graph.initializer] == ["s"] and [v.name for v in light.graph.input] == ["x", "w", "m"]

    inferred = io.infer_shapes(model)
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.output)}
    assert shapes["r"][1] == 8 and shapes["z"][1] == 5  # Reshape read s's value; MatMul read m's shape
    assert [v.name for v in inferred.graph.input] == ["x"] and inferred.producer_name == "test"
    assert [t.SerializeToString() for t in inferred.graph.initializer] == [
        t.SerializeToString() for t in model.graph.initializer]
    assert not model.graph.value_info  # a copy: the model itself is unchanged

    assert io.infer_shapes(model, in_place=True) is model
    assert model.SerializeToString() == inferred.SerializeToString()


# --- hostile inputs (issue 13, items 11 to 14 and 16) ----------------------------------------------


def peak_bytes(call) -> int:
    """The peak of Python allocations while ``call()`` runs."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("length", [None, "150000000"], ids=["to-end-of-file", "explicit"])
def test_r3_external_length_checked_against_the_shape_before_reading(tmp_path, length):
    with open(tmp_path / "w.bin", "wb") as f:
        f.truncate(150_000_000)  # sparse: no disk, but a naive loader reads 150 MB
    path = external_model(tmp_path, "w.bin", length=length)
    messages = []
    peak = peak_bytes(lambda: messages.append(load_error(path)))
    assert f"holds 150000000 bytes, its shape and type need {W.nbytes}" in messages[0]
    assert peak < 1_000_000


def _unblock_reader(fifo):
    """Opens ``fifo`` for writing and closes it, so a reader blocked on it sees the end of the file."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader: nothing is blocked
        pass


@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
def test_r5_model_path_must_be_a_regular_file(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "model.onnx"
        os.mkfifo(path)
        watchdog = threading.Timer(5, _unblock_reader, [path])  # a regression fails instead of hanging
        watchdog.daemon = True
        watchdog.start()
    elif kind == "socket":
        path = tmp_path / "model.onnx"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    else:
        path = "/dev/null"  # a character device, like /dev/zero (which a naive loader reads forever)
    try:
        assert f"cannot load {path}: not a regular file" in load_error(path)
    finally:
        if kind == "fifo":
            watchdog.cancel()
        elif kind == "socket":
            server.close()


def sparse_model(folder, location) -> pathlib.Path:
    """folder/model.onnx: y = x + w, ``w`` a sparse initializer whose values live in external data."""
    values = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2], data_location=TensorProto.EXTERNAL)
    values.external_data.add(key="location", value=location)
    indices = numpy_helper.from_array(np.array([0, 3], np.int64), "w_indices")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [4])],
    )
    return write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "model.onnx")


SPARSE_VALUES = np.array([1.5, -2.0], np.float32)


def test_r1_sparse_initializer_external_data_resolves_relative_to_model_folder(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(SPARSE_VALUES.tobytes())
    path = sparse_model(tmp_path / "m", "w.bin")
    monkeypatch.chdir(tmp_path)  # a loader that resolves against the cwd finds nothing here
    values = io.load_model(path).graph.sparse_initializer[0].values
    assert not uses_external_data(values)
    np.testing.assert_array_equal(numpy_helper.to_array(values), SPARSE_VALUES)


@pytest.mark.parametrize(
    ("location", "why"),
    [("../w.bin", "not a relative path inside the model's folder"), ("link.bin", "is a symbolic link"),
     ("short.bin", "holds 4 bytes, its shape and type need 8")],
)
def test_r1_sparse_initializer_external_data_checked_like_dense_tensors(tmp_path, monkeypatch, location, why):
    (tmp_path / "m").mkdir()
    (tmp_path / "w.bin").write_bytes(SPARSE_VALUES.tobytes())  # outside the model's folder
    (tmp_path / "m" / "link.bin").symlink_to(tmp_path / "w.bin")
    (tmp_path / "m" / "short.bin").write_bytes(SPARSE_VALUES[:1].tobytes())
    path = sparse_model(tmp_path / "m", location)
    monkeypatch.chdir(tmp_path / "m")  # where a cwd-relative loader would find ../w.bin
    assert why in load_error(path)


def test_r4_op_type_and_domain_must_be_utf8(tmp_path):
    foo = helper.make_node("Zzzz", ["y"], ["z"], domain="com.acme")  # custom domain: the checker skips it
    data = conv_model(extra_nodes=[foo], extra_opsets=[helper.make_opsetid("com.acme", 1)]).SerializeToString()
    path = write_bytes(tmp_path / "m.onnx", data.replace(b"Zzzz", b"\xdazzz"))
    assert "a name, op type or domain is not valid UTF-8" in load_error(path)


@pytest.mark.parametrize("name", ["w.bin", "sub/w.bin"])
def test_r9_output_must_not_be_a_file_the_input_reads(tmp_path, monkeypatch, name):
    (tmp_path / "sub").mkdir()
    (tmp_path / name).write_bytes(W.tobytes())
    source = external_model(tmp_path, name)
    (tmp_path / "hard.bin").hardlink_to(tmp_path / name)
    for out in (tmp_path / name, tmp_path / "sub" / ".." / name, tmp_path / "hard.bin"):
        with pytest.raises(OnnxcarError, match=f"it is external data of the input model {re.escape(str(source))}"):
            io.check_output_path(out, force=True, source=source)
    # the weights file of a large output (<out>.data) is checked too
    monkeypatch.setattr(io, "EXTERNAL_DATA_THRESHOLD", 0)
    (tmp_path / "out.onnx.data").hardlink_to(tmp_path / name)
    with pytest.raises(OnnxcarError, match="it is external data of the input model"):
        io.save_model(conv_model(), tmp_path / "out.onnx", force=True, source=source)
    assert (tmp_path / name).read_bytes() == W.tobytes() and not (tmp_path / "out.onnx").exists()


def test_r9_unreadable_source_leaves_the_output_check_to_the_loader(tmp_path):
    source = write_bytes(tmp_path / "m.onnx", b"not a model")
    assert io.check_output_path(tmp_path / "out.onnx", force=False, source=source) == tmp_path / "out.onnx"
