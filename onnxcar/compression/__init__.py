"""Deep Compression (Han et al. 2016) after filter pruning: weight pruning, weight sharing, trained quantization
and Huffman coding, with a runnable model, a container that restores it bit for bit, and honest size accounting.

Importing this package does not import torch; only the fine-tuning stages need it.
"""

from onnxcar.compression.config import CompressConfig, LayerValues
from onnxcar.compression.container import pack, unpack, unpack_with_layout
from onnxcar.compression.pipeline import compress
from onnxcar.compression.result import CompressResult, checkpoint_paths
from onnxcar.compression.sizes import SizeTable, format_table, size_table

__all__ = ["CompressConfig", "CompressResult", "LayerValues", "SizeTable", "checkpoint_paths", "compress",
           "format_table", "pack", "size_table", "unpack", "unpack_with_layout"]
