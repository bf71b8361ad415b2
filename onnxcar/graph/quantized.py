"""Integer-quantized ops, which onnxcar does not prune through: the reason it gives for them.

Dynamic quantization (onnxruntime's ``quantize_dynamic``) and the QOperator format replace a
Conv or MatMul by an integer op whose weights are integers without a DequantizeLinear in
front; the channel analysis does not follow channels through them. QDQ models (float ops
reading DequantizeLinear weights) are not affected: they stay prunable.
"""

import onnx

INTEGER_OPS = frozenset({
    "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "MatMulIntegerToFloat", "QGemm", "QLinearAdd", "QLinearMul",
    "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu",
})
"""Op types of the default and ``com.microsoft`` domains that compute on quantized integers."""


def integer_ops(model: onnx.ModelProto) -> list[str]:
    """The integer-quantized op types ``model``'s main graph holds, sorted."""
    return sorted({node.op_type for node in model.graph.node if node.op_type in INTEGER_OPS})


def integer_ops_reason(ops: list[str]) -> str:
    """The one line that says why a model with integer-quantized ``ops`` is not pruned, and what to do."""
    return f"quantized (integer) ops {', '.join(ops)}: prune the float model, then quantize"
