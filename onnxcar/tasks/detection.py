"""Detection: agreement with the original model's boxes, F1 at IoU 0.5, for YOLO-style ``[N, 4 + C, A]`` heads.

The built-in adapter reads YOLOv8's export layout: per anchor, a box ``(cx, cy, w, h)`` then one
score per class. A detection is an anchor whose best class scores above :data:`SCORE`, kept by
a greedy per-class non-maximum suppression at :data:`NMS_IOU`, at most :data:`MAX_BOXES` per
image. Another layout is a plugin task whose ``view`` rearranges the outputs into this one.
"""

import numpy as np

from onnxcar.errors import DataError
from onnxcar.tasks import TaskRule, register_task

SCORE = 0.25
NMS_IOU = 0.7
MATCH_IOU = 0.5
MAX_BOXES = 100


@register_task("detection")
class Detection(TaskRule):
    """Per-sample outcome: F1 of the model's detections against the original's, a match being a box of the
    same class at IoU >= 0.5 (each used once, best scores first); 1.0 where neither detects anything."""

    help = "F1 at IoU 0.5 of a YOLO-style [N, 4 + C, anchors] head's boxes against the original's"
    metric = "f1"

    def check(self, shapes):
        shape = shapes[0]
        if len(shape) != 3 or shape[1] < 5:
            raise DataError(f"detection reads a first output of [N, 4 + classes, anchors] (YOLOv8's layout); this "
                            f"one is {list(shape)} for one item: the fidelity task reads any layout",
                            arguments=("task",))

    def targets(self, view):
        return np.stack([_pack(_detect(head)) for head in view])

    def outcomes(self, view, targets, sizes):
        scores = np.empty(len(view))
        for i, (head, target) in enumerate(zip(view, targets)):
            found, wanted = _detect(head), target[target[:, 5] > 0]
            total = len(found) + len(wanted)
            scores[i] = 1.0 if total == 0 else 2 * _matches(found, wanted) / total
        return scores


def _detect(head: np.ndarray) -> np.ndarray:
    """Rows ``(x1, y1, x2, y2, class, score)`` of one image's ``[4 + C, A]`` head, best first."""
    classes = head[4:]
    best, score = classes.argmax(axis=0), classes.max(axis=0)
    keep = np.flatnonzero(score > SCORE)
    keep = keep[np.argsort(-score[keep], kind="stable")]
    cx, cy, w, h = head[:4, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, best[keep], score[keep]], axis=1)
    kept: list[int] = []
    for i in range(len(boxes)):
        same = [j for j in kept if boxes[j, 4] == boxes[i, 4]]
        if not same or _iou(boxes[i], boxes[same]).max() < NMS_IOU:
            kept.append(i)
            if len(kept) == MAX_BOXES:
                break
    return boxes[kept]


def _pack(boxes: np.ndarray) -> np.ndarray:
    """``[MAX_BOXES, 6]``: the boxes (x1, y1, x2, y2, class) with a last column 1 for a box, 0 for padding."""
    packed = np.zeros((MAX_BOXES, 6))
    packed[: len(boxes), :5] = boxes[:, :5]
    packed[: len(boxes), 5] = 1
    return packed


def _matches(found: np.ndarray, wanted: np.ndarray) -> int:
    """Boxes of ``found`` (best first) matched to a distinct box of ``wanted`` of the same class at IoU >= 0.5."""
    free = np.ones(len(wanted), bool)
    count = 0
    for box in found:
        candidates = np.flatnonzero(free & (wanted[:, 4] == box[4]))
        if len(candidates):
            overlaps = _iou(box, wanted[candidates])
            if overlaps.max() >= MATCH_IOU:
                free[candidates[overlaps.argmax()]] = False
                count += 1
    return count


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one ``(x1, y1, x2, y2, ...)`` box with each row of ``others``; two boxes without area overlap
    fully when they are the same box."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(others) - inter
    same = np.all(others[:, :4] == box[:4], axis=1).astype(np.float64)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), same)
