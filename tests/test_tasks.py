"""Tasks: what CAR and RAR measure on CTC recognisers, segmenters, detectors and multi-output models."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import onnxcar
from onnxcar.cli.main import main
from onnxcar.errors import DataError, OnnxcarError
from onnxcar.tasks import TASKS, Task, bind_task
from tests.zoo import tasks


def _data(tmp_path, shape, seed=0, labels=None):
    path = tmp_path / "data.npz"
    arrays = {"images": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
    if labels is not None:
        arrays["labels"] = labels
    np.savez(path, **arrays)
    return onnxcar.Data(path, preprocess="none", labels_key="labels" if labels is not None else None)


def test_classification_refuses_a_sequence_output_and_lists_the_tasks(tmp_path):
    data = _data(tmp_path, (8, 3, 8, 12))
    with pytest.raises(DataError, match=r"first output is shaped \[1, 12, 6\] for one item, not \[1, classes\]: "
                                        r"choose the task that reads it \(ctc, segmentation, detection, regression, "
                                        r"fidelity"):
        onnxcar.prune(tasks.ctc_recogniser(), data=data, criterion="car", target=onnxcar.Ratio(0.5))


def test_ctc_reads_a_time_major_output_and_decodes():
    session = ort.InferenceSession(tasks.ctc_recogniser().SerializeToString(), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).standard_normal((2, 3, 8, 12)).astype(np.float32)
    task = bind_task(Task("ctc"), session.run(None, {"x": images[:1]}), session.run(None, {"x": images}))
    assert task.axes == (1,)  # [T, N, C]
    view = task.view(session.run(None, {"x": images}))
    assert view.shape == (2, 12, 6)


@pytest.mark.parametrize("best, decoded", [([1, 1, 0, 2, 2, 1], [1, 2, 1]), ([0, 0, 0, 0, 0, 0], []),
                                           ([3, 0, 3, 3, 0, 0], [3, 3])])
def test_ctc_collapses_repeats_and_drops_blanks(best, decoded):
    view = np.eye(4)[best][None]  # one sample, T = 6, 4 classes
    rule = TASKS.get("ctc")
    targets = rule.targets(view)
    assert targets[0][targets[0] >= 0].tolist() == decoded
    assert rule.outcomes(view, targets, ()).tolist() == [1.0]


def test_ctc_ties_by_character_error_rate():
    rule = TASKS.get("ctc")
    target = rule.targets(np.eye(4)[[1, 0, 2, 0, 3, 0]][None])  # "1 2 3"
    one_wrong = np.eye(4)[[1, 0, 2, 0, 1, 0]][None]  # "1 2 1"
    assert rule.outcomes(one_wrong, target, ()).tolist() == [0.0]
    assert rule.tie_values(one_wrong, target, "loss") == pytest.approx([1 / 3])


def test_segmentation_mean_iou():
    rule = TASKS.get("segmentation")
    original = np.zeros((1, 3, 2, 2))
    original[0, 1, 0, :] = 1  # top row class 1, bottom row class 0
    pruned = np.zeros((1, 3, 2, 2))
    pruned[0, 1, 0, 0] = 1  # one pixel of class 1 lost to class 0
    # class 0: {2 bottom} vs {2 bottom + 1} -> 2/3; class 1: 1/2
    assert rule.outcomes(pruned, rule.targets(original), ()) == pytest.approx([(2 / 3 + 1 / 2) / 2])


def test_segmentation_thresholds_a_one_channel_map():
    rule = TASKS.get("segmentation")
    original = np.array([[[[0.9, 0.8], [0.1, 0.0]]]])
    pruned = np.array([[[[0.9, 0.2], [0.1, 0.0]]]])
    assert rule.outcomes(pruned, rule.targets(original), ()) == pytest.approx([0.5])
    assert rule.outcomes(original * 0, rule.targets(original * 0), ()) == pytest.approx([1.0])  # both empty


def test_fidelity_weighs_each_output_alike_whatever_its_scale():
    task = Task("fidelity", axes=(0, 0), sizes=(2, 1))
    small, large = np.array([[1e-3, 1e-3]]), np.array([[1e3]])
    view = task.view([small, large])
    assert view.shape == (1, 3)
    off = task.view([small * 1.1, large])  # 10 % off on the small output only
    assert task.outcomes(off, view) == pytest.approx([0.01 / 2])


def test_regression_reads_every_output():
    task = Task("regression", axes=(0, 1), sizes=(2, 3))
    view = task.view([np.zeros((4, 2)), np.ones((3, 4))])  # the second output has its batch on axis 1
    assert view.shape == (4, 5) and view[:, 2:].tolist() == np.ones((4, 3)).tolist()


def test_binding_refuses_an_output_without_a_batch_axis():
    with pytest.raises(DataError, match="no one batch axis"):
        bind_task(Task("fidelity"), [np.zeros((3, 1))], [np.zeros((3, 1))])


def test_agreement_tasks_refuse_labels(tmp_path):
    data = _data(tmp_path, (8, 3, 16, 16), labels=np.zeros(8, np.int64))
    with pytest.raises(DataError, match="the segmentation task compares with the original model's outputs"):
        onnxcar.prune(tasks.sigmoid_map(), data=data, criterion="car", task="segmentation", target=onnxcar.Ratio(0.5))


def test_car_needs_a_task_measured_by_an_accuracy(tmp_path):
    with pytest.raises(OnnxcarError, match="criterion car is for classification; the fidelity task is measured by an "
                                           "error"):
        onnxcar.prune(tasks.yolo_head(), data=_data(tmp_path, (8, 3, 8, 8)), criterion="car", task="fidelity",
                      target=onnxcar.Ratio(0.5))


def test_detection_f1_matches_boxes_of_the_same_class():
    rule = TASKS.get("detection")
    head = np.zeros((1, 6, 3))  # 2 classes, 3 anchors: (cx, cy, w, h, score0, score1)
    head[0, :, 0] = [10, 10, 4, 4, 0.9, 0.0]
    head[0, :, 1] = [30, 30, 4, 4, 0.0, 0.8]
    head[0, :, 2] = [10.2, 10, 4, 4, 0.6, 0.0]  # suppressed: same class, IoU 0.9 with anchor 0
    targets = rule.targets(head)
    assert rule.outcomes(head, targets, ()) == pytest.approx([1.0])
    moved = head.copy()
    moved[0, 0, 1] = 33  # class 1's box shifted by 3 of its 4: IoU 1/7
    assert rule.outcomes(moved, targets, ()) == pytest.approx([2 * 1 / 4])  # 1 match of 2 found, 2 wanted
    relabelled = head.copy()
    relabelled[0, 4:, 1] = [0.8, 0.0]  # the second box now says class 0
    assert rule.outcomes(relabelled, targets, ()) == pytest.approx([0.5])


def test_detection_refuses_another_layout():
    with pytest.raises(DataError, match=r"detection reads a first output of \[N, 4 \+ classes, anchors\]"):
        TASKS.get("detection").check([(1, 4, 100)])


@pytest.mark.parametrize("model, shape, task, criterion", [
    (tasks.ctc_recogniser, (12, 3, 8, 12), "ctc", "car"),
    (tasks.yolo_head, (12, 3, 8, 8), "detection", "car"),
    (tasks.sigmoid_map, (12, 3, 16, 16), "segmentation", "car"),
    (tasks.yolo_head, (12, 3, 8, 8), "fidelity", "rar"),
])
def test_prune_by_task_starts_from_full_agreement(tmp_path, model, shape, task, criterion):
    result = onnxcar.prune(model(), data=_data(tmp_path, shape), criterion=criterion, task=task,
                           target=onnxcar.Ratio(0.5))
    assert result.original_metric == (0.0 if task == "fidelity" else 1.0)  # the original agrees with itself
    assert result.settings["task"] == task and result.removals


def test_eval_reports_the_tasks_metric(tmp_path):
    path = tmp_path / "ctc.onnx"
    onnx.save(tasks.ctc_recogniser(), path)
    data = _data(tmp_path, (6, 3, 8, 12))
    result = CliRunner().invoke(main, ["eval", str(path), "--data", str(data.path), "--preprocess", "none",
                                       "--no-labels", "--task", "ctc", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"sequence_accuracy": 1.0, "n": 6}


def test_a_plugin_task_is_registered_and_chosen():
    from onnxcar.tasks import TaskRule, register_task

    @register_task("always-right")
    class AlwaysRight(TaskRule):
        def outcomes(self, view, targets, sizes):
            return np.ones(len(view))

    try:
        assert Task("always-right").rule.outcomes(np.zeros((3, 1)), None, ()).tolist() == [1.0, 1.0, 1.0]
    finally:
        TASKS._entries.pop("always-right")
