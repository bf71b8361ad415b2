"""``onnxcar report``: show what was pruned and why, on one self-contained HTML page."""

from onnxcar.htmlreport.kinds import KINDS, register_kind
from onnxcar.htmlreport.render import RenderedReport, ReportConfig, render_report

__all__ = ["KINDS", "RenderedReport", "ReportConfig", "register_kind", "render_report"]
