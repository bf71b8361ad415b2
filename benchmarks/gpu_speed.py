"""The GPU path, measured in one command: the torch forward ceiling against CAR's candidate throughput.

1. The forward ceiling: images/s of the whole network through the torch bridge (``TorchRunner``,
   the runner CAR scoring uses) at fp32, tf32 and fp16, batch ``--batch-size``, after warm-up,
   with the device synchronised around the timed calls.
2. CAR on the GPU: half of conv1 (24 of 48 filters) pruned greedily, one filter per iteration,
   on the ``--images`` pruning images through ``onnxcar.prune`` with the torch runner
   (``--precision``), timed end to end; candidate-images/s counts, as ``car_speed.py`` does, the
   work of the naive method (every remaining filter on every image, every iteration), so it is
   comparable with the forward ceiling of the same precision.
3. ``car_speed.py --runner torch --device DEVICE`` on the same images (naive, exhaustive, engine).

Targets (issue 11): candidate-images/s >= 50 % of the forward ceiling, and step 2 in under 60 s.
Needs a CUDA build of torch (the project pins the CPU build; install the CUDA wheel of the same
version). Run from the repository root:

    PYTHONPATH=. python benchmarks/gpu_speed.py --data ~/.cache/onnxcar/cifar10/cifar10_prune_5000.npz
    PYTHONPATH=. python benchmarks/gpu_speed.py --device cpu --images 200 --skip-car-speed   # a dry run on the CPU
"""

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

import onnxcar
from onnxcar.io import load_model
from onnxcar.runners import RunnerConfig
from onnxcar.runners.torch_runner import TorchRunner


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def forward_ceiling(model, device: str, precision: str, batch: int, seconds: float = 5.0) -> float:
    """Images/s of the whole network at ``precision``: warm-up, then as many timed calls as fit in ``seconds``."""
    images = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
    with TorchRunner(model, RunnerConfig(device=device, precision=precision, runner="torch")) as runner:
        for _ in range(3):
            runner.run({"input": images})
        synchronize(device)
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            runner.run({"input": images})  # returns numpy: the copy back synchronises
            calls += 1
        synchronize(device)
        return calls * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samples/alexnet_cifar10.onnx")
    parser.add_argument("--data", default="samples/cifar10_prune_1000.npz")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--precision", choices=["fp32", "tf32", "fp16"], default="fp32")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--skip-car-speed", action="store_true", help="skip step 3")
    args = parser.parse_args()
    model = load_model(args.model)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}, batch size {args.batch_size}", flush=True)
    ceilings = {p: forward_ceiling(model, args.device, p, args.batch_size) for p in ("fp32", "tf32", "fp16")}
    for precision, rate in ceilings.items():
        print(f"forward ceiling {precision}: {rate:,.0f} images/s", flush=True)

    data = onnxcar.Data(args.data, preprocess="cifar10", limit=args.images)
    runner = RunnerConfig(device=args.device, precision=args.precision, batch_size=args.batch_size, runner="torch")
    start = time.perf_counter()
    result = onnxcar.prune(model, data=data, criterion="car", target=onnxcar.Ratio(0.5), layers=["conv1"],
                           runner=runner, verify=False)
    seconds = time.perf_counter() - start
    with np.load(args.data) as archive:
        images = min(args.images, len(archive["labels"]))
    work = images * sum(48 - k for k in range(len(result.removals)))
    rate = work / seconds
    print(f"CAR, half of conv1 greedily ({len(result.removals)} iterations, {images} images, {args.precision}): "
          f"{seconds:.1f} s (target < 60 s), {rate:,.0f} candidate-images/s = "
          f"{rate / ceilings[args.precision]:.0%} of the {args.precision} forward ceiling (target >= 50 %); "
          f"pruning-set accuracy {result.original_metric:.4f} -> {result.final_metric:.4f}", flush=True)
    if not args.skip_car_speed:
        subprocess.run([sys.executable, "benchmarks/car_speed.py", "--runner", "torch", "--device", args.device,
                        "--data", args.data, "--images", str(args.images), "--batch-size", str(args.batch_size)],
                       check=True)


if __name__ == "__main__":
    main()
