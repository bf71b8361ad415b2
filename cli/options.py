"""Option groups shared by commands: the data to read, and where results go."""

import functools
import re
from pathlib import Path

import click

from onnxcar.data.options import data_spec
from onnxcar.data.spec import PRESETS, DataSpec
from onnxcar.errors import OnnxcarError


def comma_floats(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


def byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A positive number of bytes, optionally with a binary suffix K, M, G or T."""
    if value is None:
        return None
    match = re.fullmatch(r"([0-9]+)([KMGT]?)", value.strip().upper())
    if not match or int(match[1]) < 1:
        raise click.BadParameter(f"expected a positive size such as 500M or 64G, got {value!r}")
    return int(match[1]) * 1024 ** " KMGT".index(match[2] or " ")


_DATA_OPTIONS = [
    click.option("--images-key", default="images", show_default=True, help="Array of images in a .npz."),
    click.option("--labels-key", default="labels", show_default=True, help="Array of labels in a .npz."),
    click.option("--no-labels", is_flag=True, help="Unlabelled data (agreement mode needs no labels)."),
    click.option(
        "--preprocess",
        type=click.Choice(list(PRESETS)),
        help="Preset; none feeds stored arrays untouched. Default: none for float .npz images, else required.",
    ),
    click.option("--resize", type=click.IntRange(min=1), help="Resize the shorter image side to this (bilinear)."),
    click.option("--crop", type=click.IntRange(min=1), help="Centre-crop to this square size."),
    click.option("--mean", callback=comma_floats, help="Per-channel mean after scaling to [0, 1], e.g. 0.5,0.5,0.5."),
    click.option("--std", callback=comma_floats, help="Per-channel std after scaling to [0, 1]."),
    click.option("--layout", type=click.Choice(["NCHW", "NHWC"], case_sensitive=False), help="Model input layout."),
    click.option("--input-name", help="Model input the images feed (default: the only one)."),
    click.option("--limit", type=click.IntRange(min=1), help="Keep N items (seeded, class-stratified)."),
    click.option(
        "--split",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        help="Use this held-out fraction (seeded, class-stratified) as the data.",
    ),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of --limit and --split."),
    click.option("--archive-max-files", type=click.IntRange(min=1),
                 help=f"Refuse an archive with more members [default: {DataSpec.archive_max_files:,}]."),
    click.option("--archive-max-bytes", callback=byte_size,
                 help=f"Refuse an archive that unpacks to more (suffix K, M, G, T) "
                      f"[default: {DataSpec.archive_max_bytes // 2**30}G]."),
]
_DATA_PARAMS = (
    "data", "images_key", "labels_key", "no_labels", "preprocess", "resize", "crop", "mean", "std", "layout",
    "input_name", "limit", "split", "seed", "archive_max_files", "archive_max_bytes",
)


def data_options(required: bool):
    """Adds the data options; the command receives them as one ``data_spec: DataSpec | None``."""
    data = click.option(
        "--data",
        type=click.Path(exists=True),
        required=required,
        help="A .npz (images, labels), an image folder root/<class>/<image>, or a .tar/.tar.gz/.tgz of one.",
    )

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name in _DATA_PARAMS}
            return command(*args, data_spec=data_spec_from_options(**values), **kwargs)

        for option in reversed([data, *_DATA_OPTIONS]):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def data_spec_from_options(*, data: str | None, **options) -> DataSpec | None:
    """The DataSpec the data options describe; None when ``--data`` is not given."""
    if data is None:
        given = [name for name in ("resize", "crop", "mean", "std", "layout", "input_name", "preprocess", "limit",
                                   "split", "archive_max_files", "archive_max_bytes") if options[name] is not None]
        if given:
            raise OnnxcarError(f"--{given[0].replace('_', '-')} needs --data")
        return None
    return data_spec(data, **options)


def output_options(command):
    """Adds ``-o/--output``, ``--force`` and ``--json`` (parameters output, force, as_json)."""
    for option in reversed(
        [
            click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write the result."),
            click.option("--force", is_flag=True, help="Overwrite an existing output."),
            click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout."),
        ]
    ):
        command = option(command)
    return command


def runner_options(command):
    """Adds ``--runner``, ``--device``, ``--precision``, ``--threads`` and ``--batch-size``;
    the command receives ``runner: RunnerConfig``."""
    from onnxcar.runners.config import RunnerConfig

    @functools.wraps(command)
    def wrapper(*args, runner, device, precision, threads, batch_size, **kwargs):
        config = RunnerConfig(device, threads, batch_size, precision=precision, runner=runner)
        return command(*args, runner=config, **kwargs)

    from onnxcar.runners import RUNNERS

    for option in reversed(
        [
            click.option("--runner", type=click.Choice(RUNNERS.names()), default="ort", show_default=True,
                         help="; ".join(f"{r.name}: {r.help}" for r in RUNNERS) + "."),
            click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                         help="Where the runner runs (cuda: onnxruntime-gpu, or a CUDA build of torch)."),
            click.option("--precision", type=click.Choice(["fp32", "tf32", "fp16"]), default="fp32",
                         show_default=True, help="Float math of --runner torch; tf32 matters on CUDA only."),
            click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
                         help="Intra-op threads (0: the runner's default; torch: process-wide)."),
            click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
                         help="Samples per runner call."),
        ]
    ):
        wrapper = option(wrapper)
    return wrapper


def backend_options(command):
    """Adds ``--backend``, ``--ray-address`` and ``--ray-timeout``; the command receives ``backend: BackendConfig``."""
    from onnxcar.importance.backends import BACKENDS, BackendConfig

    @functools.wraps(command)
    def wrapper(*args, backend, ray_address, ray_timeout, **kwargs):
        if ray_address is not None and backend != "ray":
            raise click.UsageError("--ray-address needs --backend ray")
        return command(*args, backend=BackendConfig(backend, ray_address, ray_timeout), **kwargs)

    for option in reversed([
        click.option("--backend", type=click.Choice(BACKENDS.names()), default="local", show_default=True,
                     help="Where candidates are evaluated (" + "; ".join(f"{b.name}: {b.help}" for b in BACKENDS) + ")."),
        click.option("--ray-address", help="A running Ray cluster, host:port (default: start a local Ray instance)."),
        click.option("--ray-timeout", type=click.FloatRange(min=0, min_open=True), default=BackendConfig.timeout_s,
                     show_default=True, help="Seconds the cluster at --ray-address has to answer."),
    ]):
        wrapper = option(wrapper)
    return wrapper


def _layers(ctx, param, value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


layers_option = click.option(
    "--layers", callback=_layers, help="Comma-separated layers, pruned in order (see inspect); default: all."
)


def criterion_option(command):
    """Adds ``--criterion``, with the registered criteria (plugins included) as choices."""
    from onnxcar.importance import CRITERIA

    lines = "; ".join(f"{c.name}: {c.help}" for c in CRITERIA)
    return click.option(
        "--criterion", type=click.Choice(CRITERIA.names()), default="l1", show_default=True,
        help=f"How filters are ranked ({lines}). Data-driven ones need --data.",
    )(command)


def tie_break_option(command):
    """Adds ``--tie-break loss|margin|index``."""
    return click.option(
        "--tie-break", type=click.Choice(["loss", "margin", "index"]), default="loss", show_default=True,
        help="Order of filters of equal CAR: least growth of the cross-entropy (loss), least fall of the mean "
             "top-1 margin (margin), or lowest index (index, the fastest).",
    )(command)


def _input_shapes(ctx, param, values: tuple[str, ...]) -> dict[str, tuple[int, ...]] | None:
    """``NAME:1x3x48x192`` options as ``{"NAME": (1, 3, 48, 192)}``; None when none is given."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split("x"))
        except ValueError:
            shape = ()
        if not name or not shape or min(shape) < 1 or name in shapes:
            raise click.BadParameter(f"expected NAME:1x3x48x192, once per model input, got {value!r}")
        shapes[name] = shape
    return shapes or None


input_shape_option = click.option(
    "--input-shape", "input_shapes", multiple=True, callback=_input_shapes, metavar="NAME:1x3xHxW",
    help="The shape of a model input whose height and width (or other dims) are symbolic, for counting MACs and "
         "making test inputs; repeat per input. Default: the data's shape.",
)


def task_option(command):
    """Adds ``--task``, with the registered tasks (plugins included) as choices."""
    from onnxcar.tasks import TASKS

    lines = "; ".join(f"{name}: {TASKS.get(name).help}" for name in TASKS.names())
    return click.option(
        "--task", type=click.Choice(TASKS.names()), default="classification", show_default=True,
        help=f"What the outputs mean, and so what CAR (accuracy) or RAR (error) measures ({lines}).",
    )(command)


_PREPROCESSING = ("images_key", "preprocess", "resize", "crop", "mean", "std", "layout", "input_name",
                  "archive_max_files", "archive_max_bytes")


def repair_options(command):
    """Adds ``--repair``, ``--repair-data`` and ``--repair-limit``; the command receives
    ``repair: RepairConfig``. Place it above ``data_options``: the repair data takes the same
    preprocessing options as ``--data``."""
    from onnxcar.repair import REPAIRS
    from onnxcar.repair.step import RepairConfig

    @functools.wraps(command)
    def wrapper(*args, repair, repair_data, repair_limit, **kwargs):
        if repair_data is None and repair_limit is not None:
            raise OnnxcarError("--repair-limit needs --repair-data")
        spec = None
        if repair_data is not None:
            preprocessing = {name: kwargs[name] for name in _PREPROCESSING}
            spec = data_spec(repair_data, no_labels=True, limit=repair_limit, seed=kwargs["seed"], **preprocessing)
            if kwargs["data"] is None:  # the preprocessing options served the repair data
                kwargs.update({name: None for name in _PREPROCESSING if name != "images_key"})
        config = RepairConfig(repair, spec)
        if kwargs["data"] is None:
            config.check(None)  # before any work
        return command(*args, repair=config, **kwargs)

    for option in reversed([
        click.option("--repair", type=click.Choice(REPAIRS.names()), default="none", show_default=True,
                     help="After surgery, restore accuracy without training (" +
                          "; ".join(f"{r.name}: {r.help}" for r in REPAIRS) + ")."),
        click.option("--repair-data", type=click.Path(exists=True),
                     help="Unlabelled images for the repair, preprocessed as --data [default: --data]."),
        click.option("--repair-limit", type=click.IntRange(min=1),
                     help="Keep N items of --repair-data (seeded by --seed)."),
    ]):
        wrapper = option(wrapper)
    return wrapper
