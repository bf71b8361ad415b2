"""Side by side with the peers: onnxcar, onnxsim and Torch-Pruning at the same MACs budgets.

For each budget (a fraction of the original MACs) every method prunes the same model on the
same pruning images (see ``peer_methods.py``); onnxcar then measures every pruned ONNX file
the same way: MACs, parameters, test top-1 right after pruning, after each of the tool's own
repairs, and after the same fine-tuning; pruning time and onnxruntime CPU latency at batch 1
and 32. Results go to ``benchmarks/results/peers_<model>.json`` (a ``peers`` report that
``onnxcar report`` draws as accuracy against MACs), saved after every run (``--resume``
continues), and a Markdown table on stdout.

    python benchmarks/peers.py --model alexnet [--budgets 0.75,0.5,0.33] [--methods SUBSTR,...]

The peers are the ``bench`` extra (``pip install -e ".[bench]"``); a missing one is named and
the rest still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import pathlib
import sys
import time
import traceback
from collections.abc import Callable

import numpy as np
import onnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import peer_methods  # noqa: E402
from peer_methods import Bench, Method  # noqa: E402

import onnxcar  # noqa: E402
from onnxcar.data import load_dataset  # noqa: E402
from onnxcar.io import save_model  # noqa: E402
from onnxcar.latency import measure_latency  # noqa: E402
from onnxcar.report import write_json  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path.home() / ".cache" / "onnxcar" / "cifar10"


@dataclasses.dataclass(frozen=True)
class Sample:
    """A committed sample: its ONNX file and a factory of its torch module with the same weights."""

    onnx_path: pathlib.Path
    torch_module: Callable[[], object]


def _sample_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "samples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "samples"))
    spec.loader.exec_module(module)
    return module


def alexnet_module():
    """The AlexNet sample's torch module, its weights read from the ONNX initializers of the same names."""
    import torch

    script = _sample_script("train_alexnet_cifar10")
    module = script.build_model([48, 96, 192, 160, 128], 512, 0.3)
    weights = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
               for t in onnx.load(ROOT / "samples" / "alexnet_cifar10.onnx").graph.initializer}
    module.load_state_dict({k: weights[k] for k in module.state_dict()})
    return module.eval()


def resnet20_module():
    script = _sample_script("train_resnet20_cifar10")
    return script.load_weights(script.build_model(), ROOT / "samples" / "resnet20_cifar10.npz")


SAMPLES = {
    "alexnet": Sample(ROOT / "samples" / "alexnet_cifar10.onnx", alexnet_module),
    "resnet20": Sample(ROOT / "samples" / "resnet20_cifar10.onnx", resnet20_module),
}


class OneLineParser(argparse.ArgumentParser):
    """Bad input is one line on stderr and exit 2."""

    def error(self, message: str) -> None:
        print(f"peers.py: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv=None) -> argparse.Namespace:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="alexnet", help=f"a sample ({', '.join(SAMPLES)})")
    p.add_argument("--budgets", default="0.75,0.5,0.33", help="fractions of the original MACs")
    p.add_argument("--peers", default="onnxcar,onnxsim,torch-pruning", help="tools to run")
    p.add_argument("--methods", default="", help="run only methods whose name contains one of these (comma list)")
    p.add_argument("--prune-data", default=str(ROOT / "samples" / "cifar10_prune_1000.npz"))
    p.add_argument("--test-data", default=str(CACHE / "cifar10_test_10000.npz"),
                   help="all 10,000 test images (the training scripts write it to the cache)")
    p.add_argument("--repair-data", default=None, help="unlabelled images for onnxcar's repairs (default: the pruning data)")
    p.add_argument("--repair-limit", type=int, default=None)
    p.add_argument("--finetune-data", default=str(CACHE / "cifar10_train_45000.npz"))
    p.add_argument("--finetune-limit", type=int, default=5000, help="seeded stratified subset of the training set")
    p.add_argument("--finetune-epochs", type=int, default=2, help="0: no fine-tuning")
    p.add_argument("--per-iter", type=int, default=4, help="onnxcar filters removed per greedy iteration")
    p.add_argument("--out", default=None, help="default: benchmarks/results/peers_<model>.json")
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out and do the rest")
    p.add_argument("--latency", action="store_true",
                   help="at the end, time every model again back to back (for a quiet machine)")
    args = p.parse_args(argv)
    if args.model not in SAMPLES:
        p.error(f"unknown model {args.model!r}; choose from {', '.join(SAMPLES)}")
    try:
        args.budgets = [float(b) for b in args.budgets.split(",")]
    except ValueError:
        p.error(f"--budgets must be a comma list of fractions, got {args.budgets!r}")
    if not all(0 < b < 1 for b in args.budgets):
        p.error(f"every budget must lie in (0, 1), got {args.budgets}")
    args.peers = args.peers.split(",")
    unknown = [t for t in args.peers if t not in ("onnxcar", *peer_methods.PEERS)]
    if unknown:
        p.error(f"unknown peer {unknown[0]!r}; choose from onnxcar, {', '.join(peer_methods.PEERS)}")
    for name in ("prune_data", "test_data") + (("finetune_data",) if args.finetune_epochs else ()):
        if not pathlib.Path(getattr(args, name)).is_file():
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)} does not exist "
                    "(run the sample's training script to write the full sets to the cache)")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_bench(name: str, sample: Sample, prune_data: onnxcar.Data, per_iter: int,
               repair_data: onnxcar.Data | None = None) -> Bench:
    original = onnx.load(sample.onnx_path)
    dataset = load_dataset(prune_data)
    repair = None if repair_data is None else load_dataset(repair_data).images.astype(np.float32)
    return Bench(name, original, onnxcar.inspect(original).macs, prune_data, dataset.images.astype(np.float32),
                 dataset.labels, sample.torch_module, per_iter, repair)


def measure(model: onnx.ModelProto, test_data: onnxcar.Data) -> dict:
    inspection = onnxcar.inspect(model)
    return {"macs": inspection.macs, "params": inspection.params,
            "test_top1": onnxcar.evaluate(model, test_data).top1,
            "latency_ms": measure_latency_ms(model)}


def measure_latency_ms(model: onnx.ModelProto) -> dict[str, float]:
    """onnxruntime CPU milliseconds per call at batch 1 and 32 (median of 20)."""
    return {str(b): measure_latency(model, batch=b, runs=20).median_ms for b in (1, 32)}


def finetuned_top1(model: onnx.ModelProto, settings: dict) -> dict:
    from onnxcar.bridge.finetune_config import FinetuneConfig

    config = FinetuneConfig(epochs=settings["epochs"], seed=0)
    result = onnxcar.finetune(model, settings["data"], settings["val"], config)
    return {"epochs": config.epochs, "seed": config.seed, "data": settings["data"].to_dict(),
            "seconds": round(result.seconds, 1), "test_top1": onnxcar.evaluate(result.model, settings["test"]).top1}


def run_method(bench: Bench, method: Method, budget: float, test_data: onnxcar.Data, models: pathlib.Path) -> dict:
    """Prunes to ``budget`` by ``method``, keeps the model in ``models`` and measures it."""
    record = {"method": method.name, "tool": method.tool, "budget": budget, "repairs": {}}
    try:
        landed = method.prune(bench, budget)
        save_model(landed.model, model_path(models, record), force=True)
        record.update(knob=landed.knob, knob_value=landed.value, reached=landed.reached, removals=landed.removals,
                      prune_seconds=round(landed.seconds, 2), search_seconds=round(landed.search_seconds, 2),
                      **measure(landed.model, test_data))
        record["macs_fraction"] = record["macs"] / bench.macs
    except Exception as err:  # a peer's failure is a result to report, not the end of the benchmark
        traceback.print_exc(file=sys.stderr)
        record["error"] = f"{type(err).__name__}: {err}"
    return record


def add_repairs(record: dict, method: Method, bench: Bench, model: onnx.ModelProto, test_data: onnxcar.Data) -> None:
    """Test top-1 after each of the tool's repairs that ``record`` lacks (repairs registered since it ran)."""
    for repair, fix in method.repairs.items():
        if repair in record["repairs"]:
            continue
        start = time.perf_counter()
        repaired = fix(bench, model, record["removals"])
        record["repairs"][repair] = {"seconds": round(time.perf_counter() - start, 2),
                                     "test_top1": onnxcar.evaluate(repaired, test_data).top1}


def model_path(models: pathlib.Path, record: dict) -> pathlib.Path:
    return models / f"{record['method'].replace(' ', '_')}_{record['budget']:g}.onnx"


def markdown(results: dict) -> str:
    """Test top-1 (MACs kept) per method and budget; the best figure of each column among the runs
    within the budget in bold."""
    budgets = results["budgets"]
    stages = [("prune", lambda r: r.get("test_top1"))]
    repairs = sorted({k for r in results["runs"] for k in r.get("repairs", {})})
    stages += [(f"+{k}", lambda r, k=k: r.get("repairs", {}).get(k, {}).get("test_top1")) for k in repairs]
    stages += [("fine-tuned", lambda r: r.get("finetuned", {}).get("test_top1"))]
    runs = {(r["method"], r["budget"]): r for r in results["runs"]}
    methods = list(dict.fromkeys(r["method"] for r in results["runs"]))
    header = ["method"] + [f"{b:g} MACs: {stage}" for b in budgets for stage, _ in stages]
    within = [r for r in results["runs"] if "error" not in r and r["reached"]]  # over budget: shown, never best
    best = {(b, s): max((get(r) for r in within if r["budget"] == b and get(r) is not None), default=None)
            for b in budgets for s, get in stages}
    lines = [f"Original: test top-1 {results['original']['test_top1']:.2%}, {results['original']['macs']:,} MACs",
             "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method in methods:
        cells = [method]
        for b in budgets:
            run = runs.get((method, b), {})
            for stage, get in stages:
                value = get(run) if "error" not in run else None
                if value is None:
                    cells.append("error" if "error" in run and stage == "prune" else "-")
                    continue
                text = f"{value:.2%}"
                text = f"**{text}**" if value == best[b, stage] else text
                if stage == "prune":
                    text += f" ({run['macs_fraction']:.2f}{'' if run['reached'] else ', over budget'})"
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def select_methods(peers: list[str], filters: str) -> tuple[list[Method], list[str]]:
    found, missing = peer_methods.available_peers()
    wanted = [p for p in peers if p in found or p == "onnxcar"]
    methods = [m for m in peer_methods.all_methods(wanted) if m.tool in wanted]
    if filters:
        methods = [m for m in methods if any(f in m.name for f in filters.split(","))]
    return methods, [p for p in peers if p in missing]


def main(argv=None) -> int:
    args = parse_args(argv)
    out = pathlib.Path(args.out or ROOT / "benchmarks" / "results" / f"peers_{args.model}.json")
    sample = SAMPLES[args.model]
    prune_data = onnxcar.Data(args.prune_data, preprocess="cifar10")
    test_data = onnxcar.Data(args.test_data, preprocess="cifar10")
    repair_data = None if args.repair_data is None else onnxcar.Data(
        args.repair_data, preprocess="cifar10", labels_key=None, limit=args.repair_limit)
    finetune = None if not args.finetune_epochs else {
        "epochs": args.finetune_epochs, "test": test_data, "val": prune_data,
        "data": onnxcar.Data(args.finetune_data, preprocess="cifar10", limit=args.finetune_limit)}
    methods, missing = select_methods(args.peers, args.methods)
    for peer in missing:
        print(f"peers.py: {peer} is not installed (pip install -e \".[bench]\"): its methods are skipped",
              file=sys.stderr)
    bench = make_bench(args.model, sample, prune_data, args.per_iter, repair_data)
    settings = {"prune_data": args.prune_data, "test_data": args.test_data, "repair_data": args.repair_data,
                "repair_limit": args.repair_limit, "per_iter": args.per_iter}
    results = benchmark(bench, methods, args.budgets, test_data, finetune, out,
                        {"model": str(sample.onnx_path.relative_to(ROOT)), "settings": settings,
                         "missing_peers": missing}, resume=args.resume, latency=args.latency)
    print(markdown(results))
    return 0


def benchmark(bench: Bench, methods: list[Method], budgets: list[float], test_data: onnxcar.Data,
              finetune: dict | None, out: pathlib.Path, header: dict, resume: bool = False,
              latency: bool = False) -> dict:
    """Runs every method at every budget, then the tools' repairs and the fine-tuning of every pruned
    model (and, with ``latency``, times every model again back to back), saving ``out`` after each
    step; returns the report.

    Each pruned model is kept beside ``out`` (``<out stem>_models/``), so that a resumed run adds
    what its runs lack (a repair registered since, the fine-tuning) without pruning again.
    """
    models = out.with_name(out.stem + "_models")
    models.mkdir(parents=True, exist_ok=True)
    results = {"kind": "peers", "version": 1, **header, "budgets": budgets, "runs": []}
    if resume and out.exists():
        previous = json.loads(out.read_text())
        if previous.get("settings") == header["settings"]:
            results["runs"] = [r for r in previous["runs"] if "error" not in r and "removals" in r]
            results["original"] = previous["original"]
        else:
            print(f"peers.py: {out} was made with other settings; starting afresh", file=sys.stderr)
    if "original" not in results:
        results["original"] = measure(bench.original, test_data)
    done = {(r["method"], r["budget"]) for r in results["runs"]}
    for budget in budgets:  # first every pruning, then the repairs, then the fine-tuning: the cheap figures first
        for method in methods:
            if (method.name, budget) in done:
                continue
            log(f"{method.name} at {budget:g} of the MACs")
            record = run_method(bench, method, budget, test_data, models)
            results["runs"].append(record)
            write_json(results, out)
            log(record.get("error") or f"    top-1 {record['test_top1']:.2%} at {record['macs_fraction']:.3f} "
                                       f"of the MACs in {record['prune_seconds']:.1f} s")
    by_name = {m.name: m for m in methods}
    stages = ("repairs", *(("fine-tuning",) if finetune else ()), *(("latency",) if latency else ()))
    for stage in stages:
        if stage == "latency":  # every model timed again, back to back in this process, the original first
            results["original"]["latency_ms"] = measure_latency_ms(bench.original)
        for record in results["runs"]:
            method, path = by_name.get(record["method"]), model_path(models, record)
            if method is None or "error" in record or not path.exists():
                continue
            if stage == "repairs" and set(method.repairs) - set(record["repairs"]):
                log(f"{method.name} at {record['budget']:g}: repairs")
                add_repairs(record, method, bench, onnx.load(path), test_data)
            elif stage == "fine-tuning" and "finetuned" not in record:
                log(f"{method.name} at {record['budget']:g}: fine-tuning")  # the pruned model: the same start for all
                record["finetuned"] = finetuned_top1(onnx.load(path), finetune)
            elif stage == "latency":
                record["latency_ms"] = measure_latency_ms(onnx.load(path))
            else:
                continue
            write_json(results, out)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
