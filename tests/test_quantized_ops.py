"""Integer-quantized models (dynamic quantization, QOperator): refused with the reason; QDQ stays prunable."""

import json
import re

import onnx
import pytest
from click.testing import CliRunner

import onnxcar
from onnxcar.cli.main import main
from onnxcar.errors import UnsupportedOpError
from tests.zoo import tasks
from tests.zoo.quantized import quantized_sample

REASON = "quantized (integer) ops ConvInteger, DynamicQuantizeLinear: prune the float model, then quantize"


def test_inspect_names_the_integer_ops(tmp_path):
    path = tmp_path / "dynamic.onnx"
    onnx.save(tasks.conv_integer(), path)
    assert onnxcar.inspect(path).unsupported == REASON
    result = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["unsupported"] == REASON
    text = CliRunner().invoke(main, ["inspect", str(path)])
    assert "not pruned: quantized (integer) ops" in text.output


def test_prune_refuses_with_the_reason_in_one_line(tmp_path):
    path = tmp_path / "dynamic.onnx"
    onnx.save(tasks.conv_integer(), path)
    with pytest.raises(UnsupportedOpError, match=re.escape(REASON)):
        onnxcar.prune(path, target=onnxcar.Ratio(0.5))
    result = CliRunner().invoke(main, ["prune", str(path), "-o", str(tmp_path / "out.onnx"), "--ratio", "0.5"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"onnxcar: error: {REASON}"


def test_qdq_models_stay_supported():
    inspection = onnxcar.inspect(quantized_sample(images=20))
    assert inspection.unsupported is None and inspection.prunable
