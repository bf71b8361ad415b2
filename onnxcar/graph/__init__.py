"""Graph analysis: finds channel groups and never mutates the model."""

from onnxcar.graph.analysis import Analysis, Group, Member, analyze, layer_name
from onnxcar.graph.channels import Role

__all__ = ["Analysis", "Group", "Member", "Role", "analyze", "layer_name"]
