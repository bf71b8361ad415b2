"""Surgery: mutates graphs to remove or mask channels, and never scores."""

from onnxcar.surgery.apply import mask_channels, remove_channels
from onnxcar.surgery.plan import Plan, make_plan
from onnxcar.surgery.verify import Tolerance, VerifyResult, verify_equal

__all__ = ["Plan", "make_plan", "mask_channels", "remove_channels", "Tolerance", "VerifyResult", "verify_equal"]
