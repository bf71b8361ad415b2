"""Size accounting in Deep Compression's form (Han et al. 2016, Tables 4-5), from the bytes the container holds.

Each coded layer is measured against its weight tensor in the ORIGINAL model (before filter
pruning) stored as float32, so filter pruning counts toward the ratio. A layer's compressed
bytes are its whole record: tensor index, flags, counts, codebook, code tables, codes and
padding. The rows, the deflated rest of the model and the container's framing add up to
the container's size exactly.
"""

import math
from dataclasses import asdict, dataclass

import onnx

from onnxcar.compression.container import Packed
from onnxcar.compression.layers import WeightLayer
from onnxcar.errors import OnnxcarError


@dataclass(frozen=True)
class LayerSize:
    """One coded layer's sizes."""

    layer: str
    kind: str
    tensor: str
    original_weights: int  # in the original (unpruned) layer
    weights: int  # after filter pruning
    kept: int  # nonzero weights
    fillers: int  # filler entries bridging long gaps
    codebook: int  # shared values
    index_bits: int  # a fixed-width codebook index: ceil(log2(codebook + 1)), the filler included
    coded_index_bits: float  # Huffman-coded codebook index, per entry
    position_bits: int  # a fixed-width relative position
    coded_position_bits: float  # Huffman-coded relative position, per entry
    codebook_bytes: int
    table_bytes: float  # the two Huffman tables (stored as bits)
    compressed_bytes: int  # the whole record in the container
    original_bytes: int  # float32 original layer

    @property
    def kept_share(self) -> float:
        """Kept weights over the original layer's weights."""
        return self.kept / self.original_weights if self.original_weights else 0.0

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.compressed_bytes

    @property
    def share(self) -> float:
        return self.compressed_bytes / self.original_bytes if self.original_bytes else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "kept_share": round(self.kept_share, 6), "ratio": round(self.ratio, 3),
                "share": round(self.share, 6)}


@dataclass(frozen=True)
class Total:
    """Bytes of a set of layers, or of the whole model, against the original."""

    name: str
    original_bytes: int
    compressed_bytes: int

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.compressed_bytes if self.compressed_bytes else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 3),
                "share": round(self.compressed_bytes / self.original_bytes, 6) if self.original_bytes else None}


@dataclass(frozen=True)
class SizeTable:
    """Per-layer sizes, the rest of the container, and totals."""

    layers: list[LayerSize]
    rest_bytes: int  # the deflated model without the coded tensors (graph, biases, uncoded weights)
    framing_bytes: int  # magic, version, checksums, record count
    container_bytes: int
    original_model_bytes: int  # the original model's serialised protobuf

    def totals(self) -> list[Total]:
        """All conv layers, all coded layers, and the whole model (container against the original model file)."""
        def total(name, rows):
            return Total(name, sum(r.original_bytes for r in rows), sum(r.compressed_bytes for r in rows))

        conv = [r for r in self.layers if r.kind == "conv"]
        return [total("conv layers", conv), total("coded layers", self.layers),
                Total("whole model", self.original_model_bytes, self.container_bytes)]

    def to_dict(self) -> dict:
        return {"layers": [r.to_dict() for r in self.layers], "rest_bytes": self.rest_bytes,
                "framing_bytes": self.framing_bytes, "container_bytes": self.container_bytes,
                "original_model_bytes": self.original_model_bytes, "totals": [t.to_dict() for t in self.totals()]}


def size_table(packed: Packed, layers: list[WeightLayer], original: onnx.ModelProto) -> SizeTable:
    """The table of ``packed``'s coded layers against the same tensors (by name) in ``original``."""
    originals = {init.name: math.prod(init.dims) for init in original.graph.initializer}
    rows = []
    for layer in layers:
        stats = packed.records[layer.tensor]
        if layer.tensor not in originals:
            raise OnnxcarError(f"the original model has no weight {layer.tensor!r}: give the model this one was pruned from")
        if originals[layer.tensor] < stats.size:
            raise OnnxcarError(f"weight {layer.tensor!r} has {stats.size} values, more than the {originals[layer.tensor]} "
                               f"of the original model: give the model this one was pruned from")
        entries = max(stats.entries, 1)
        rows.append(LayerSize(
            layer=layer.name, kind=layer.kind, tensor=layer.tensor, original_weights=originals[layer.tensor],
            weights=stats.size, kept=stats.kept, fillers=stats.entries - stats.kept, codebook=stats.codebook,
            index_bits=stats.codebook.bit_length(), coded_index_bits=round(stats.value_bits / entries, 4),
            position_bits=stats.width, coded_position_bits=round(stats.position_bits / entries, 4),
            codebook_bytes=stats.codebook_bytes, table_bytes=stats.table_bits / 8,
            compressed_bytes=packed.record_bytes[layer.tensor], original_bytes=4 * originals[layer.tensor],
        ))
    return SizeTable(rows, packed.skeleton_bytes, packed.framing_bytes, len(packed.data), original.ByteSize())


def format_table(table: SizeTable) -> str:
    """The table as Markdown: one row per layer, then the rest of the container and the totals."""
    head = ("| layer | weights kept | codebook | index bits (fixed / Huffman) | position bits (fixed / Huffman) "
            "| codebook B | tables B | compressed B | original fp32 B | ratio | share |")
    lines = [head, "|" + " --- |" * 11]
    for r in table.layers:
        lines.append(
            f"| {r.layer} | {r.kept:,} ({r.kept_share:.1%}) | {r.codebook} | {r.index_bits} / {r.coded_index_bits:.2f} "
            f"| {r.position_bits} / {r.coded_position_bits:.2f} | {r.codebook_bytes:,} | {r.table_bytes:.1f} "
            f"| {r.compressed_bytes:,} | {r.original_bytes:,} | {r.ratio:.1f}x | {r.share:.2%} |")
    lines.append(f"| rest (graph, biases, other tensors; deflated) + framing | | | | | | "
                 f"| {table.rest_bytes:,} + {table.framing_bytes} | | | |")
    for t in table.totals():
        share = f"{t.compressed_bytes / t.original_bytes:.2%}" if t.original_bytes else ""
        lines.append(f"| **{t.name}** | | | | | | | {t.compressed_bytes:,} | {t.original_bytes:,} "
                     f"| **{t.ratio:.1f}x** | {share} |")
    return "\n".join(lines)
