"""The settings of a compression run, validated on construction (no torch needed)."""

from dataclasses import dataclass, field

from onnxcar.bridge.finetune_config import FinetuneConfig
from onnxcar.compression.layers import KINDS, WeightLayer
from onnxcar.compression.sparse import MAX_WIDTH
from onnxcar.errors import OnnxcarError
from onnxcar.runners.config import RunnerConfig

CODEBOOK_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class LayerValues:
    """A value per layer: ``default`` for all, overridden by kind (``conv``, ``fc``), overridden by layer name.

    Written as ``0.8`` or ``conv=5,fc=4`` or ``conv1=0.7,conv2=0.8`` (a layer is named by its
    short name or its weight tensor).
    """

    default: float | None = None
    named: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, text: str, what: str, base: "LayerValues | None" = None) -> "LayerValues":
        """The values ``text`` gives; the named ones are laid over ``base`` unless ``text`` gives a value for all."""
        default, named = None, {}
        for part in (p.strip() for p in text.split(",")):
            key, _, value = part.rpartition("=")
            try:
                number = float(value)
            except ValueError:
                raise OnnxcarError(f"{what}: expected a number or name=number, got {part!r}", arguments=(what,)) from None
            if key:
                named[key.strip()] = number
            elif default is None:
                default = number
            else:
                raise OnnxcarError(f"{what}: two values for every layer in {text!r}", arguments=(what,))
        if base is not None and default is None:
            default, named = base.default, {**dict(base.named), **named}
        return cls(default, tuple(named.items()))

    def get(self, layer: WeightLayer, what: str, fallback: float | None = None) -> float:
        """The value for ``layer``: by name, else by kind, else the default, else ``fallback`` (None: an error)."""
        named = dict(self.named)
        for key in (layer.name, layer.tensor, layer.kind):
            if key in named:
                return named[key]
        value = self.default if self.default is not None else fallback
        if value is None:
            raise OnnxcarError(f"{what} gives no value for layer {layer.name}", arguments=(what,))
        return value

    def check(self, layers: list[WeightLayer], what: str) -> None:
        """Refuses names that are no kind and none of ``layers``."""
        known = set(KINDS) | {layer.name for layer in layers} | {layer.tensor for layer in layers}
        unknown = [key for key, _ in self.named if key not in known]
        if unknown:
            raise OnnxcarError(f"{what} names {unknown[0]!r}, which is no layer being compressed "
                               f"({', '.join(layer.name for layer in layers)}) nor a kind ({', '.join(KINDS)})",
                               arguments=(what,))

    def values(self) -> list[float]:
        return [v for v in (self.default, *(v for _, v in self.named)) if v is not None]

    def to_dict(self) -> dict:
        return {"default": self.default, **dict(self.named)}


DEFAULT_BITS = LayerValues(named=(("conv", 5), ("fc", 4)))
DEFAULT_INDEX_BITS = LayerValues(named=(("conv", 4), ("fc", 5)))  # Deep Compression's relative index widths


@dataclass(frozen=True)
class CompressConfig:
    """How to compress, stage by stage (Han et al. 2016).

    Weight pruning: ``sparsity`` per layer (the fraction of weights zeroed, smallest magnitudes
    first), or ``max_drop`` accuracy points found by a sensitivity scan on the validation data
    in steps of ``scan_step``. ``retrain`` fine-tunes the pruned float weights with zeros held
    at zero; with ``gradual`` the weights are not pruned at once before it but along a cubic
    ramp during its first half (Zhu and Gupta 2017). Weight sharing: 2**``bits`` k-means
    centroids per layer, stored as ``codebook_dtype``. ``finetune`` trains the centroids
    (trained quantization). Entropy coding: relative position indices of ``index_bits`` bits.
    ``layers``: which weight layers to compress (default: all).
    """

    sparsity: LayerValues | None = None
    max_drop: float | None = None
    bits: LayerValues = DEFAULT_BITS
    index_bits: LayerValues = DEFAULT_INDEX_BITS
    layers: tuple[str, ...] = ()
    scan_step: float = 0.05
    codebook_dtype: str = "float16"
    retrain: FinetuneConfig | None = None
    gradual: bool = False
    finetune: FinetuneConfig | None = None
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    def __post_init__(self):
        checks = {
            "give exactly one of sparsity and max_drop": ((self.sparsity is None) != (self.max_drop is None),
                                                          ("sparsity", "max_drop")),
            "sparsity must lie in [0, 1)": (all(0 <= s < 1 for s in (self.sparsity.values() if self.sparsity else [])),
                                            ("sparsity",)),
            "max_drop must not be negative": (self.max_drop is None or self.max_drop >= 0, ("max_drop",)),
            "bits must be whole numbers from 1 to 8": (_whole(self.bits, 1, 8), ("bits",)),
            f"index bits must be whole numbers from 1 to {MAX_WIDTH}": (_whole(self.index_bits, 1, MAX_WIDTH),
                                                                        ("index_bits",)),
            "gradual pruning needs retraining epochs": (not self.gradual or self.retrain is not None,
                                                        ("gradual", "retrain_epochs")),
            "scan_step must lie in (0, 0.5]": (0 < self.scan_step <= 0.5, ("scan_step",)),
            f"codebook_dtype must be one of {', '.join(CODEBOOK_DTYPES)}": (self.codebook_dtype in CODEBOOK_DTYPES,
                                                                            ("codebook_dtype",)),
        }
        failed = [(message, arguments) for message, (ok, arguments) in checks.items() if not ok]
        if failed:
            raise OnnxcarError(failed[0][0], arguments=failed[0][1])

    def to_dict(self) -> dict:
        return {
            "sparsity": self.sparsity.to_dict() if self.sparsity else None, "max_drop": self.max_drop,
            "bits": self.bits.to_dict(), "index_bits": self.index_bits.to_dict(), "layers": list(self.layers),
            "scan_step": self.scan_step, "codebook_dtype": self.codebook_dtype,
            "retrain": self.retrain.to_dict() if self.retrain else None, "gradual": self.gradual,
            "finetune": self.finetune.to_dict() if self.finetune else None,
        }


def _whole(values: LayerValues, low: int, high: int) -> bool:
    return all(v == int(v) and low <= v <= high for v in values.values())
