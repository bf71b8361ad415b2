"""A plugin as a separate package writes one: a criterion and a handler for an op of its own domain."""

from onnxcar import register_criterion, register_handler
from onnxcar.graph.handlers_tensor import unary
from onnxcar.importance.weights import producer_filter_norms


class LargestFirst:
    """Removes the filters of largest L1 norm first (the opposite of Li et al.)."""

    name = "largest-l1"
    depends_on_removals = False

    def __call__(self, analysis, group, removed):
        return -producer_filter_norms(analysis, group, 1)


@register_criterion("largest-l1", help="largest L1 norm first (a demo plugin)")
def _largest_first(inputs):
    return LargestFirst()


register_handler("Frobnicate", domain="com.acme")(unary)  # channel-wise: channels pass through
