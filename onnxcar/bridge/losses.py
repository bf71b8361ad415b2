"""Fine-tuning losses: MSE for regression; cross-entropy mixed with distillation from a teacher for classification."""

import torch
import torch.nn.functional as F

from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.errors import OnnxcarError


def distill_weight(config: FinetuneConfig, labelled: bool, has_teacher: bool) -> float:
    """The distillation share of the loss: 0 without a teacher, 1 without labels, else ``config.distill_weight``."""
    if not has_teacher:
        if not labelled:
            raise OnnxcarError("the training data has no labels: give a teacher to distil from", arguments=("teacher",))
        return 0.0
    if config.task == "regression":
        raise OnnxcarError("distillation from a teacher is for classification", arguments=("teacher",))
    return config.distill_weight if labelled else 1.0


def regression_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error, ``targets`` moved to the predictions' device, dtype and shape."""
    return F.mse_loss(predictions, targets.to(predictions.device, predictions.dtype).reshape(predictions.shape))


def classification_loss(logits: torch.Tensor, labels: torch.Tensor | None, teacher_logits: torch.Tensor | None,
                        distill: float, temperature: float) -> torch.Tensor:
    """``(1 - distill) * cross-entropy + distill * T² * KL(teacher || student)``, KL on logits / T (``temperature``).

    A term whose weight is 0 is left out, and its input (``labels`` or ``teacher_logits``) may be None.
    """
    loss = 0.0
    if distill < 1:
        loss = (1 - distill) * F.cross_entropy(logits, labels.to(logits.device))
    if distill > 0:
        if teacher_logits.shape != logits.shape:
            raise OnnxcarError(f"the teacher gives {teacher_logits.shape[1]} outputs per sample, "
                               f"the model {logits.shape[1]}")
        t = temperature
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                      reduction="batchmean", log_target=True)
        loss = loss + distill * t * t * kl
    return loss
