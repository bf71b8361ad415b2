"""The settings of a fine-tuning run, validated on construction (no torch needed)."""

from dataclasses import asdict, dataclass

from onnxcar.errors import OnnxcarError

_CHOICES = {"optimizer": ("sgd", "adamw"), "schedule": ("cosine", "step"), "task": ("classification", "regression")}


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune.

    ``schedule`` cosine anneals the learning rate to 0 over ``epochs``; step divides it
    by 10 every third of them. ``momentum`` is SGD's (Nesterov); AdamW has its own.
    ``augment`` pads images by ``augment.PAD`` pixels, crops at random and flips half of them.
    ``keep_sparsity`` keeps every weight that starts at exactly zero at zero.
    ``distill_weight`` and ``temperature`` apply when a teacher is given.
    """

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    optimizer: str = "sgd"
    schedule: str = "cosine"
    weight_decay: float = 5e-4
    momentum: float = 0.9
    augment: bool = True
    keep_sparsity: bool = False
    distill_weight: float = 0.5
    temperature: float = 4.0
    device: str = "auto"
    seed: int = 0
    task: str = "classification"

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise OnnxcarError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        checks = {
            "epochs must be at least 1": self.epochs >= 1,
            "batch size must be at least 2 (BatchNorm trains on batch statistics)": self.batch_size >= 2,
            "the learning rate must be positive": self.lr > 0,
            "weight decay must not be negative": self.weight_decay >= 0,
            "momentum must be in [0, 1)": 0 <= self.momentum < 1,
            "the distillation weight must be in [0, 1]": 0 <= self.distill_weight <= 1,
            "the temperature must be positive": self.temperature > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise OnnxcarError(failed[0])

    def to_dict(self) -> dict:
        return asdict(self)
