"""Writing a result: a model and its JSON report beside it, never over the input or by accident."""

import pathlib

import onnx

from onnxcar.errors import OnnxcarError
from onnxcar.io import check_output_path, remove_stale_temporaries, save_model
from onnxcar.report import write_json


def output_paths(path: str | pathlib.Path, report: str | pathlib.Path | None = None, *, force: bool,
                 source: str | None) -> tuple[pathlib.Path, pathlib.Path]:
    """The model and report paths of a result (report default: ``path`` with .json), checked to be
    writable without overwriting the input, each other, or (without ``force``) anything."""
    path = check_output_path(path, force=force, source=source)
    report_path = check_output_path(pathlib.Path(report) if report is not None else path.with_suffix(".json"),
                                    force=force, source=source)
    if report_path.resolve() == path.resolve():
        raise OnnxcarError(f"the report would overwrite the model {path}: give the report another path",
                           arguments=("report",))
    return path, report_path


def save_with_report(model: onnx.ModelProto, report: dict, path: str | pathlib.Path,
                     report_path: str | pathlib.Path | None = None, *, force: bool = False,
                     source: str | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes ``model`` to ``path`` and ``report`` (with the output's path) beside it; returns both paths.

    Temporary files that an earlier write of ``path``, killed mid-way, left behind are removed.
    """
    path, report_path = output_paths(path, report_path, force=force, source=source)
    remove_stale_temporaries(path)
    save_model(model, path, force=force, source=source)
    write_json({**report, "output": str(path)}, report_path)
    return path, report_path
