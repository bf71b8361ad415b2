"""Verification of pruned models: float rounding on probability maps, declarations the original breaks."""

import logging

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxcar
from onnxcar.errors import VerificationError
from onnxcar.surgery import Tolerance, verify_equal
from tests.zoo import tasks


def _shifted(model: onnx.ModelProto, delta: float, where: tuple[int, ...] | None = None) -> onnx.ModelProto:
    """``model`` with ``delta`` added to its output ``y`` (at one element of ``[1, 1, H, W]`` when ``where`` is
    given, else everywhere)."""
    shifted = onnx.ModelProto()
    shifted.CopyFrom(model)
    graph = shifted.graph
    next(n for n in graph.node if "y" in n.output).output[0] = "y_raw"
    shape = [d.dim_value or 1 for d in graph.output[0].type.tensor_type.shape.dim]
    offset = np.zeros(shape if where else [1], np.float32)
    offset[where or 0] = delta
    graph.initializer.append(numpy_helper.from_array(offset, "offset"))
    graph.node.append(helper.make_node("Add", ["y_raw", "offset"], ["y"], name="shift"))
    return shifted


def test_float_rounding_on_a_probability_map_passes():
    """A sigmoid map near 1e-6 everywhere: one float32 step of 1.0 (2^-23) is rounding, not a wrong model."""
    model = tasks.sigmoid_map()
    result = verify_equal(model, _shifted(model, 2.0**-23), batch_sizes=(1,))
    assert 0 < result.max_abs_error <= 2.0**-23
    assert result.max_scaled_error <= 1.0


def test_a_wrong_pixel_fails_with_where_and_both_values():
    model = tasks.sigmoid_map()
    with pytest.raises(VerificationError) as caught:
        verify_equal(model, _shifted(model, 1e-3, (0, 0, 3, 5)), batch_sizes=(1,))
    message = str(caught.value)
    assert "output 'y' at (0, 0, 3, 5): " in message and " pruned, " in message and " masked" in message


def test_tolerance_overrides_the_default():
    model = tasks.sigmoid_map()
    wrong = _shifted(model, 1e-3, (0, 0, 3, 5))
    with pytest.raises(VerificationError):
        verify_equal(model, wrong, batch_sizes=(1,))
    loose = Tolerance(rtol=1e-2, atol=1e-2, floor=1e-2)
    assert verify_equal(model, wrong, batch_sizes=(1,), tolerance=loose).max_scaled_error <= 1.0


@pytest.mark.parametrize("scale, layers, floor", [(1e-3, 1, 4 * 2.0**-23), (1e-3, 100, 40 * 2.0**-23),
                                                   (50.0, 4, 400 * 2.0**-23)])
def test_rounding_floor_follows_scale_and_depth(scale, layers, floor):
    expected = np.array([0.0, scale], np.float32)
    assert Tolerance(rtol=0, atol=0).allowed(expected, layers)[0] == pytest.approx(floor + 1e-12)


def test_prune_tolerates_a_declaration_the_original_already_breaks(caplog):
    """The model declares ``y`` as ``[1, ?]`` but computes ``[N, 8, 8, 8]``: warned once, before the work."""
    with caplog.at_level(logging.WARNING):
        result = onnxcar.prune(tasks.wrong_declared_output(), target=onnxcar.Ratio(0.5), criterion="l1")
    warnings = [r.getMessage() for r in caplog.records if "declares" in r.getMessage()]
    assert len(warnings) == 1 and "output 'y' has shape (1, 8, 8, 8) but the model declares [1, None]" in warnings[0]
    assert result.after.params < result.before.params
    assert [d.dim_value for d in result.model.graph.output[0].type.tensor_type.shape.dim][:1] == [1]


def test_a_failed_check_leaves_no_journal(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise VerificationError("the pruned model differs from the masked model")

    monkeypatch.setattr("onnxcar.pruning.driver.verify_equal", fail)
    journal = tmp_path / "out.onnx.journal"
    with pytest.raises(VerificationError):
        onnxcar.prune(tasks.sigmoid_map(), target=onnxcar.Ratio(0.5), criterion="l1", journal=journal)
    assert not journal.exists()
