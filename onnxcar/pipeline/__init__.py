"""Pipelines: a recipe takes a model through stages (prune, finetune, evaluate...) to a gated artifact."""

from onnxcar.pipeline.gates import GATES, GateResult
from onnxcar.pipeline.recipe import Recipe, load_recipe
from onnxcar.pipeline.run import PipelineResult, run_recipe
from onnxcar.pipeline.schema import RecipeError
from onnxcar.pipeline.stages import STAGES, Stage, StageContext, StageOutput, register_stage

__all__ = [
    "GATES", "GateResult", "PipelineResult", "Recipe", "RecipeError", "STAGES", "Stage", "StageContext",
    "StageOutput", "load_recipe", "register_stage", "run_recipe",
]
