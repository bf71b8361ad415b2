#!/usr/bin/env python3
"""Train the residual onnxcar sample: a CIFAR-10 ResNet-20 (He et al. 2016, option B).

Three stages of three basic blocks (16, 32 and 64 channels, 3x3 Conv + BatchNorm + ReLU),
residual adds, and 1x1 Conv + BatchNorm projection shortcuts where the shape changes;
global average pooling and one fully connected layer.  The data handling is the AlexNet
sample's (``train_alexnet_cifar10.py``): the same cache, the same seeded held-out pruning
set of 5,000 training images, the same preprocessing (``--preprocess cifar10``).

Training: SGD with Nesterov momentum, a one-cycle schedule, label smoothing, random crop
(pad 4) and horizontal flip, fp32, channels-last.  A checkpoint is written after every
epoch to ``--checkpoint`` and the run resumes from it, so an interruption loses at most one
epoch.  At the end the script exports ``resnet20_cifar10.onnx`` (opset 17, BatchNorm
kept as nodes), the torch weights ``resnet20_cifar10.npz`` (the state dict, for tools that
prune the torch module, e.g. ``benchmarks/peers.py``) and the provenance
``resnet20_cifar10.json``. Its pruning and test subsets are the AlexNet sample's committed
``cifar10_prune_1000.npz`` and ``cifar10_test_2000.npz`` (same split seed, same images).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_alexnet_cifar10 import (  # noqa: E402  (the shared data handling)
    REPO_ROOT, Augmenter, evaluate, file_sha256, first_per_class, load_cifar10, log,
    predict_onnx, predict_torch, split_pruning_set, PRUNE_NPZ_PER_CLASS,
    TEST_NPZ_PER_CLASS,
)


def build_model(widths=(16, 32, 64), blocks: int = 3, classes: int = 10):
    """The ResNet-20 torch module; its state dict keys are those of ``resnet20_cifar10.npz``."""
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              nn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + self.shortcut(x))

    class ResNetCIFAR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU(inplace=True)
            layers, cin = [], widths[0]
            for i, w in enumerate(widths):
                stage = []
                for b in range(blocks):
                    stage.append(BasicBlock(cin, w, 2 if (b == 0 and i > 0) else 1))
                    cin = w
                layers.append(nn.Sequential(*stage))
            self.layer1, self.layer2, self.layer3 = layers
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(widths[-1], classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            for m in self.modules():  # zero-init the last BN of each residual branch
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

        def forward(self, x):
            import torch

            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(torch.flatten(self.pool(x), 1))

    return ResNetCIFAR()


def load_weights(model, npz_path: Path):
    """Load ``resnet20_cifar10.npz`` (a state dict as named arrays) into ``model``."""
    import torch

    with np.load(npz_path) as z:
        state = {k: torch.from_numpy(z[k]) for k in z.files}
    model.load_state_dict(state)
    return model.eval()


def train(args, data, train_idx, held_idx):
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    model = build_model().to(memory_format=torch.channels_last)
    x_train = torch.from_numpy(data["train_images"][train_idx])
    y_train = torch.from_numpy(data["train_labels"][train_idx])
    n = len(x_train)
    steps_per_epoch = n // args.batch_size
    aug = Augmenter(g)
    decay = [p for name, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for name, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=args.warmup,
        div_factor=10.0, final_div_factor=100.0, anneal_strategy="cos")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    start, history = 1, []
    ckpt = args.checkpoint
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["args"] != _fingerprint(args):
            raise SystemExit(f"{ckpt} was written with other settings; delete it to start over")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        g.set_state(state["generator"])
        start, history = state["epoch"] + 1, state["history"]
        log(f"resumed from {ckpt} after epoch {state['epoch']}")

    held_x, held_y = data["train_images"][held_idx], data["train_labels"][held_idx]
    for epoch in range(start, args.epochs + 1):
        model.train()
        t0 = time.time()
        perm = torch.randperm(n, generator=g)
        run_loss, run_correct = 0.0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch_size:(s + 1) * args.batch_size]
            out = model(aug(x_train[idx], train=True))
            loss = loss_fn(out, y_train[idx])
            if not math.isfinite(loss.item()):
                raise SystemExit(f"loss diverged at epoch {epoch} step {s}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item() * len(idx)
            run_correct += int((out.argmax(1) == y_train[idx]).sum())
        seconds = time.time() - t0
        seen = steps_per_epoch * args.batch_size
        held_acc = evaluate(model, held_x[:1000], held_y[:1000])
        history.append({"epoch": epoch, "train_loss": run_loss / seen,
                        "train_acc": run_correct / seen, "pruning_set_acc_1000": held_acc,
                        "epoch_seconds": seconds})
        log(f"epoch {epoch:3d}/{args.epochs}  loss {run_loss / seen:.4f}  "
            f"train(aug) {run_correct / seen:.4f}  pruning-set(1000) {held_acc:.4f}  {seconds:.0f}s")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"args": _fingerprint(args), "epoch": epoch, "model": model.state_dict(),
                    "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "generator": g.get_state(), "history": history}, tmp)
        tmp.replace(ckpt)
    return model, history


def _fingerprint(args) -> dict:
    return {k: getattr(args, k) for k in ("epochs", "seed", "batch_size", "lr", "warmup",
                                          "weight_decay", "label_smoothing")}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path,
                   default=REPO_ROOT / ".." / "shared" / "datasets" / "cifar10",
                   help="folder holding train.tar.gz, test.tar.gz and SHA256SUMS")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "onnxcar" / "cifar10",
                   help="where archives are unpacked and decoded arrays are kept")
    p.add_argument("--checkpoint", type=Path,
                   default=Path.home() / ".cache" / "onnxcar" / "resnet20_checkpoint.pt",
                   help="per-epoch checkpoint; an existing one is resumed")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "samples", help="output folder")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.2, help="peak learning rate (one-cycle)")
    p.add_argument("--warmup", type=float, default=0.25, help="fraction of steps warming up")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    import onnx
    import torch

    torch.set_num_threads(args.threads)
    cache, out = args.cache.expanduser().resolve(), args.out.resolve()
    data = load_cifar10(args.data_dir.resolve(), cache)
    held_idx, train_idx = split_pruning_set(data["train_labels"])
    log(f"torch {torch.__version__}, threads {args.threads}; train {len(train_idx)}, "
        f"pruning {len(held_idx)}")
    model, history = train(args, data, train_idx, held_idx)
    model = model.eval().to(memory_format=torch.contiguous_format)

    out.mkdir(parents=True, exist_ok=True)
    weights = out / "resnet20_cifar10.npz"
    np.savez(weights, **{k: v.numpy() for k, v in model.state_dict().items()})
    onnx_path = out / "resnet20_cifar10.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 32, 32),), str(onnx_path), dynamo=False,
                      opset_version=17, do_constant_folding=False,
                      training=torch.onnx.TrainingMode.EVAL,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto)
    n_bn = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
    log(f"exported {onnx_path} ({onnx_path.stat().st_size:,} bytes, {n_bn} BatchNormalization)")

    prune_x, prune_y = data["train_images"][held_idx], data["train_labels"][held_idx]
    test_x, test_y = data["test_images"], data["test_labels"]
    p_sel = first_per_class(prune_y, PRUNE_NPZ_PER_CLASS)
    t_sel = first_per_class(test_y, TEST_NPZ_PER_CLASS)
    acc = {}
    for key, x, y in (("test_10000", test_x, test_y), ("test_2000_npz", test_x[t_sel], test_y[t_sel]),
                      ("prune_1000_npz", prune_x[p_sel], prune_y[p_sel]),
                      ("prune_5000", prune_x, prune_y)):
        lt, lo = predict_torch(model, x), predict_onnx(onnx_path, x, args.threads)
        acc[key] = {"n": int(len(y)), "torch_top1": float((lt.argmax(1) == y).mean()),
                    "onnx_top1": float((lo.argmax(1) == y).mean()),
                    "prediction_disagreements": int((lt.argmax(1) != lo.argmax(1)).sum()),
                    "max_abs_logit_diff": float(np.abs(lt - lo).max())}
        log(f"{key:15s} torch {acc[key]['torch_top1']:.4f}  onnx {acc[key]['onnx_top1']:.4f}")

    info = {
        "model": onnx_path.name,
        "architecture": "ResNet-20 for CIFAR-10: 3 stages x 3 basic blocks (16/32/64), "
                        "BatchNorm, residual adds, 1x1 projection shortcuts, global average pool, fc",
        "params": int(sum(p.numel() for p in model.parameters())),
        "input": {"name": "input", "shape": ["batch", 3, 32, 32], "preprocess": "cifar10"},
        "output": {"name": "logits", "shape": ["batch", 10]},
        "command": "python samples/train_resnet20_cifar10.py " + " ".join(sys.argv[1:]),
        "hyperparameters": _fingerprint(args),
        "seed": args.seed,
        "optimizer": "SGD Nesterov momentum 0.9, OneCycleLR cosine, label-smoothed cross-entropy",
        "augmentation": "random crop 32 from zero-padded 40x40 + horizontal flip (p=0.5)",
        "history": history,
        "seconds_per_epoch_mean": float(np.mean([h["epoch_seconds"] for h in history])),
        "wall_seconds_this_run": time.time() - t_start,
        "accuracy": acc,
        "test_top1_onnx": acc["test_10000"]["onnx_top1"],
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
                  for p in (onnx_path, weights)},
    }
    (out / "resnet20_cifar10.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"test top-1 {acc['test_10000']['onnx_top1']:.4f}; wrote {out / 'resnet20_cifar10.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
