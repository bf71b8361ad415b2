"""What fine-tuning trains and how: the trainable parameters, frozen zeros, the optimiser and its schedule."""

import torch

from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.bridge.module import OnnxModule
from onnxcar.errors import OnnxcarError


def trainable(module: OnnxModule) -> list[torch.nn.Parameter]:
    """The parameters that train: float initializers of more than one entry.

    Single values (clip bounds, epsilons, exponents, scale constants) stay fixed.
    """
    params = []
    for param in module.parameters():
        param.requires_grad_(param.numel() > 1)
        if param.requires_grad:
            params.append(param)
    if not params:
        raise OnnxcarError("the model has no float weights to train")
    return params


def freeze_zeros(params: list[torch.nn.Parameter]) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, mask of its nonzero entries) for each parameter holding zeros; a hook masks their gradients."""
    masks = []
    for param in params:
        keep = (param.detach() != 0).to(param.dtype)
        if bool((keep == 0).any()):
            param.register_hook(lambda grad, keep=keep: grad * keep)
            masks.append((param, keep))
    return masks


def make_optimizer(params: list[torch.nn.Parameter], config: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum (plain SGD at momentum 0)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                           weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: FinetuneConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing to 0 over the epochs, or a tenfold drop every third of them."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
