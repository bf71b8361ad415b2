"""The container: bit-for-bit restore, a size table that adds up to the file, clean errors for damaged files."""

import os
import subprocess
import sys
import zlib

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnxcar.bridge.writeback import set_initializers
from onnxcar.cli.main import main
from onnxcar.compression import pack, size_table, unpack
from onnxcar.compression.bytestream import Reader, Writer
from onnxcar.compression.codec import decode_tensor, encode_tensor
from onnxcar.compression.container import MAGIC, VERSION, unpack_with_layout
from onnxcar.compression.kmeans import share_weights
from onnxcar.compression.layers import weight_layers
from onnxcar.compression.magnitude import prune_smallest
from onnxcar.errors import ModelError, OnnxcarError
from tests.hostile import special_file
from tests.test_prune import cli_command
from tests.zoo import handbuilt


def compressed_model(model: onnx.ModelProto, sparsity=0.6, bits=3) -> onnx.ModelProto:
    """Every weight layer of ``model`` pruned and shared, as the pipeline leaves it before coding."""
    values = {}
    for layer in weight_layers(model):
        weights = onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == layer.tensor))
        values[layer.tensor] = share_weights(prune_smallest(weights, sparsity), bits, "float16").weights()
    return set_initializers(model, values)


@pytest.fixture(scope="module")
def packed():
    model = compressed_model(handbuilt.CASES["conv_bias"]())
    layers = weight_layers(model)
    return model, layers, pack(model, {layer.tensor: 4 if layer.kind == "conv" else 5 for layer in layers})


def with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_unpack_restores_the_model_bit_for_bit(packed):
    model, _, container = packed
    assert unpack(container.data).SerializeToString() == model.SerializeToString()


def test_size_table_adds_up_to_the_container(packed):
    model, layers, container = packed
    table = size_table(container, layers, model)
    rows = sum(r.compressed_bytes for r in table.layers)
    assert rows + table.rest_bytes + table.framing_bytes == len(container.data) == table.container_bytes
    # the records, parsed back independently, take exactly the bytes the table gives each layer
    data = container.data[:-4]
    reader = Reader(data, len(MAGIC) + 1 + 4)
    skeleton = onnx.ModelProto.FromString(zlib.decompress(reader.blob("model")))
    spans = {}
    for _ in range(reader.varint("count", 99)):
        start = reader.offset
        init = skeleton.graph.initializer[reader.varint("index", 99)]
        decode_tensor(reader, int(np.prod(init.dims)), init.name)
        spans[init.name] = reader.offset - start
    assert reader.left == 0
    assert spans == {r.tensor: r.compressed_bytes for r in table.layers}
    # and the decoder's account of the file is the encoder's
    assert size_table(unpack_with_layout(container.data)[1], layers, model) == table
    whole = table.totals()[-1]
    assert whole.compressed_bytes == len(container.data) and whole.original_bytes == model.ByteSize()


def test_ratios_start_from_the_original_layer(packed):
    model, layers, container = packed
    def resized(factor: float) -> onnx.ModelProto:
        """The model with every coded layer's first dimension scaled: the shapes are all the table reads."""
        other = set_initializers(model, {})
        for init in other.graph.initializer:
            if init.name in {layer.tensor for layer in layers}:
                init.dims[0] = int(init.dims[0] * factor)
        return other

    table = size_table(container, layers, resized(2))  # an original whose layers had twice the filters
    for row in table.layers:
        assert row.original_weights == 2 * row.weights and row.original_bytes == 8 * row.weights
        assert row.ratio == pytest.approx(row.original_bytes / row.compressed_bytes)
    with pytest.raises(OnnxcarError, match="pruned from"):
        size_table(container, layers, resized(0.5))


@pytest.mark.parametrize("cut", [0, 3, 4, 9, 10, 40, -40, -5, -1])
def test_truncated_containers_are_refused(packed, cut):
    with pytest.raises(ModelError, match="cannot read"):
        unpack(packed[2].data[:cut])


def test_every_flipped_byte_is_refused(packed):
    data = packed[2].data
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        with pytest.raises(ModelError):
            unpack(bytes(damaged))
        if position < len(data) - 4:  # the same damage with a valid file checksum
            with pytest.raises(ModelError):
                unpack(with_crc(bytes(damaged[:-4])))


def test_a_newer_version_is_refused(packed):
    body = bytearray(packed[2].data[:-4])
    body[len(MAGIC)] = VERSION + 1
    with pytest.raises(ModelError, match=f"version {VERSION + 1} is not supported"):
        unpack(with_crc(bytes(body)))


def hostile(skeleton: onnx.ModelProto, records: bytes, count: int, deflated: bytes | None = None) -> bytes:
    out = Writer()
    out.raw(MAGIC)
    out.u8(VERSION)
    out.u32(0)
    out.blob(zlib.compress(skeleton.SerializeToString()) if deflated is None else deflated)
    out.varint(count)
    out.raw(records)
    return with_crc(bytes(out.data))


@pytest.mark.parametrize("case, error", [
    ("huge length", "more than"),
    ("more records than tensors", "more than"),
    ("huge tensor", "cannot describe"),
    ("over the cap", "restore to more than 1073741824 bytes"),
    ("coded twice", "coded twice"),
    ("not deflate", "does not inflate"),
])
def test_hostile_containers_are_refused_without_large_allocations(packed, case, error):
    model, layers, container = packed
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    target = next(i for i in skeleton.graph.initializer if i.name == layers[0].tensor)
    position = list(skeleton.graph.initializer).index(target)
    target.ClearField("raw_data")
    one_weight = Writer()
    one_weight.varint(position)
    encode_tensor(np.array([1.0], np.float32), 4, one_weight, "w")
    record = bytes(one_weight.data)
    del target.dims[:]
    target.dims.append(1)
    if case == "huge length":
        out = Writer()
        out.raw(MAGIC + bytes([VERSION]) + bytes(4))
        out.varint(2**62)
        data = with_crc(bytes(out.data) + b"tail")
    elif case == "more records than tensors":
        data = hostile(skeleton, record, len(skeleton.graph.initializer) + 1)
    elif case == "huge tensor":
        target.dims[0] = 2**28  # 1 GB of weights from a 6-byte record
        data = hostile(skeleton, record, 1)
    elif case == "over the cap":
        target.dims[0] = 2**31
        data = hostile(skeleton, record, 1)
    elif case == "coded twice":
        data = hostile(skeleton, record + record, 2)
    else:
        data = hostile(skeleton, record, 1, deflated=b"\x78\x9c not deflate")
    with pytest.raises(ModelError, match=error):
        unpack(data)


def test_decompress_command_restores_and_refuses(packed, tmp_path, run_cli):
    model, _, container = packed
    good, bad = tmp_path / "m.onnxz", tmp_path / "bad.onnxz"
    good.write_bytes(container.data)
    bad.write_bytes(container.data[:-7])
    result = run_cli("decompress", good, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").read_bytes() == model.SerializeToString()
    refused = CliRunner().invoke(main, ["decompress", str(bad), "-o", str(tmp_path / "x.onnx")])
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [f"onnxcar: error: cannot read {bad}: checksum mismatch: "
                                           "the file is damaged or truncated"]
    assert not (tmp_path / "x.onnx").exists()


PEAK = """
import re
from onnxcar.compression import unpack
from onnxcar.errors import ModelError
from tests.hostile import filler_bomb
try:
    unpack(filler_bomb({entries}){cap})
except ModelError as err:
    print(err)
with open("/proc/self/status") as status:  # VmHWM starts afresh at exec, unlike ru_maxrss (the parent's)
    print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) // 1024)
"""


@pytest.mark.parametrize("entries, cap, error", [
    (2_000_000, "", "restore to more than 1073741824 bytes (max_decoded_bytes)"),  # 500 KB declaring 2 GB
    (500_000, ", max_decoded_bytes=2**28", "restore to more than 268435456 bytes"),  # 125 KB declaring 512 MB
])
def test_a_filler_bomb_is_refused_by_the_decoded_size_cap_before_it_allocates(entries, cap, error):
    script = PEAK.format(entries=entries, cap=cap)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr
    message, peak_mb = done.stdout.splitlines()
    assert error in message
    assert int(peak_mb) < 400  # megabytes: the import and the file, not the declared weights


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_decompress_refuses_what_is_not_a_regular_file_without_reading_it(tmp_path, special):
    path = special_file(tmp_path, special, "pipe.onnxz")
    done = subprocess.run([*cli_command(), "decompress", str(path), "-o", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr == f"onnxcar: error: cannot read {path}: not a regular file\n"
    assert not (tmp_path / "m.onnx").exists()


def test_decompress_takes_a_decoded_size_cap(packed, tmp_path, run_cli):
    model, _, container = packed
    path = tmp_path / "m.onnxz"
    path.write_bytes(container.data)
    refused = CliRunner().invoke(main, ["decompress", str(path), "-o", str(tmp_path / "m.onnx"),
                                        "--max-decoded-bytes", "1K"])
    assert refused.exit_code == 2 and refused.stderr.splitlines() == [
        f"onnxcar: error: cannot read {path}: the coded tensors restore to more than 1024 bytes "
        "(max_decoded_bytes) (see --max-decoded-bytes)"]
    result = run_cli("decompress", path, "-o", tmp_path / "m.onnx", "--max-decoded-bytes", "1M")
    assert result.exit_code == 0 and (tmp_path / "m.onnx").read_bytes() == model.SerializeToString()
