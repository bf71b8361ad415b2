#!/usr/bin/env python3
"""Train the onnxcar sample model: a small AlexNet-style CNN on CIFAR-10.

The network has 5 convolutional and 3 fully connected layers (ReLU, overlapping
max-pooling, dropout in the FC layers, no BatchNorm), sized to train on two CPU
cores in about an hour.  Its torch modules are named conv1..conv5, fc6, fc7, fc8
so the exported ONNX nodes read ``/conv1/Conv`` ... ``/fc8/Gemm``.

What the script does:

1. unpacks ``train.tar.gz`` / ``test.tar.gz`` from ``--data-dir`` into
   ``--cache`` (never in place) and decodes every JPEG once, in sorted
   ``<class>/<file>`` order, into uint8 NHWC arrays cached as ``.npy``;
2. holds back 5,000 training images (500 per class, fixed split seed) as the
   *pruning set* and trains on the other 45,000;
3. trains with random crop (pad 4) + horizontal flip done on uint8 batches,
   AdamW, a one-cycle learning-rate schedule and label smoothing (forward
   passes under bfloat16 autocast unless ``--amp none``);
4. exports ``alexnet_cifar10.onnx`` (opset 17, dynamic batch) and checks with
   onnxruntime that its test accuracy equals the torch model's;
5. writes ``cifar10_test_2000.npz`` / ``cifar10_prune_1000.npz`` next to the
   model, the full pruning / test sets as npz into the cache, and a provenance
   JSON ``alexnet_cifar10.json``.

Preprocessing expected by the exported model (``--preprocess cifar10``):
float32 NCHW RGB, ``x = (pixel / 255 - mean) / std`` with
mean = (0.4914, 0.4822, 0.4465), std = (0.2470, 0.2435, 0.2616).

Use ``--timing N`` to train only N batches and print the projected seconds per
epoch (nothing is written to ``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

SPLIT_SEED = 2017          # fixed: which training images form the pruning set
PRUNE_PER_CLASS = 500      # held-out pruning set: 5,000 images
TEST_NPZ_PER_CLASS = 200   # committed test subset: 2,000 images
PRUNE_NPZ_PER_CLASS = 100  # committed pruning subset: 1,000 images


# --------------------------------------------------------------------------- data

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256_sums(data_dir: Path) -> dict[str, str]:
    """Archive checksums as published in SHA256SUMS (verified against the files)."""
    sums: dict[str, str] = {}
    sums_file = data_dir / "SHA256SUMS"
    if sums_file.exists():
        for line in sums_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*")] = parts[0]
    return sums


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unpack(archive: Path, dest: Path, top: str) -> Path:
    target = dest / top
    marker = dest / f".{top}.unpacked"
    if marker.exists() and target.is_dir():
        return target
    log(f"unpacking {archive} -> {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tf:
        try:
            tf.extractall(dest, filter="data")
        except TypeError:  # Python without extraction filters
            tf.extractall(dest)
    marker.write_text("ok\n")
    return target


def decode_split(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``root/<class>/*.jpg`` in sorted order into (N,32,32,3) uint8 + int64 labels."""
    from PIL import Image

    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    names = [p.name for p in class_dirs]
    if tuple(names) != CLASSES:
        raise SystemExit(f"unexpected class folders in {root}: {names}")
    images, labels = [], []
    for label, cdir in enumerate(class_dirs):
        for f in sorted(cdir.glob("*.jpg")):
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            if arr.shape != (32, 32, 3):
                raise SystemExit(f"{f}: unexpected shape {arr.shape}")
            images.append(arr)
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_cifar10(data_dir: Path, cache: Path) -> dict[str, np.ndarray]:
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        img_f, lab_f = cache / f"{split}_images.npy", cache / f"{split}_labels.npy"
        if img_f.exists() and lab_f.exists():
            out[f"{split}_images"] = np.load(img_f)
            out[f"{split}_labels"] = np.load(lab_f)
            continue
        root = unpack(data_dir / f"{split}.tar.gz", cache / "raw", split)
        t0 = time.time()
        images, labels = decode_split(root)
        log(f"decoded {len(images)} {split} JPEGs in {time.time() - t0:.1f}s")
        np.save(img_f, images)
        np.save(lab_f, labels)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def split_pruning_set(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified hold-out: PRUNE_PER_CLASS indices per class (sorted) and the rest."""
    rng = np.random.default_rng(SPLIT_SEED)
    held = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(labels == c)
        held.append(np.sort(rng.choice(idx, size=PRUNE_PER_CLASS, replace=False)))
    held_idx = np.sort(np.concatenate(held))
    mask = np.ones(len(labels), dtype=bool)
    mask[held_idx] = False
    return held_idx, np.flatnonzero(mask)


def first_per_class(labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first k samples of each class, in original order."""
    idx = np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(len(CLASSES))])
    return np.sort(idx)


def preprocess_np(images_nhwc_u8: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NCHW, /255 then CIFAR-10 mean/std."""
    x = images_nhwc_u8.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# -------------------------------------------------------------------------- model

def build_model(widths: list[int], fc: int, dropout: float):
    import torch
    from torch import nn

    c1, c2, c3, c4, c5 = widths

    class AlexNetCIFAR(nn.Module):
        """AlexNet-style CNN for 32x32 inputs: 5 conv + 3 FC, ReLU, max-pool, dropout."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, c1, 5, padding=2)
            self.relu1 = nn.ReLU(inplace=True)
            self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)   # 32 -> 16
            self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
            self.relu2 = nn.ReLU(inplace=True)
            self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)   # 16 -> 8
            self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
            self.relu3 = nn.ReLU(inplace=True)
            self.conv4 = nn.Conv2d(c3, c4, 3, padding=1)
            self.relu4 = nn.ReLU(inplace=True)
            self.conv5 = nn.Conv2d(c4, c5, 3, padding=1)
            self.relu5 = nn.ReLU(inplace=True)
            self.pool5 = nn.MaxPool2d(3, stride=2, padding=1)   # 8 -> 4
            self.drop6 = nn.Dropout(dropout)
            self.fc6 = nn.Linear(c5 * 4 * 4, fc)
            self.relu6 = nn.ReLU(inplace=True)
            self.drop7 = nn.Dropout(dropout)
            self.fc7 = nn.Linear(fc, fc)
            self.relu7 = nn.ReLU(inplace=True)
            self.fc8 = nn.Linear(fc, len(CLASSES))
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
            nn.init.normal_(self.fc8.weight, std=0.01)

        def forward(self, x):
            x = self.pool1(self.relu1(self.conv1(x)))
            x = self.pool2(self.relu2(self.conv2(x)))
            x = self.relu3(self.conv3(x))
            x = self.relu4(self.conv4(x))
            x = self.pool5(self.relu5(self.conv5(x)))
            x = torch.flatten(x, 1)
            x = self.relu6(self.fc6(self.drop6(x)))
            x = self.relu7(self.fc7(self.drop7(x)))
            return self.fc8(x)

    return AlexNetCIFAR()


def layer_table(model) -> tuple[list[dict], int, int]:
    """Per-layer output shape, parameter count and multiply-accumulates for one image."""
    import torch
    from torch import nn

    rows: list[dict] = []
    hooks = []

    def hook(name):
        def fn(mod, inp, out):
            params = sum(p.numel() for p in mod.parameters())
            if isinstance(mod, nn.Conv2d):
                macs = out.shape[1] * out.shape[2] * out.shape[3] * (
                    mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
                kind = f"Conv {mod.kernel_size[0]}x{mod.kernel_size[1]}, pad {mod.padding[0]}"
            elif isinstance(mod, nn.Linear):
                macs = mod.in_features * mod.out_features
                kind = "Gemm (fully connected)"
            else:
                macs = 0
                kind = f"MaxPool {mod.kernel_size}x{mod.kernel_size}/{mod.stride}"
            rows.append({"name": name, "type": kind,
                         "in_shape": list(inp[0].shape[1:]), "out_shape": list(out.shape[1:]),
                         "params": int(params), "macs": int(macs)})
        return fn

    for name, mod in model.named_children():
        if isinstance(mod, (nn.Conv2d, nn.Linear, nn.MaxPool2d)):
            hooks.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    model.train(was_training)
    for h in hooks:
        h.remove()
    total_params = sum(p.numel() for p in model.parameters())
    total_macs = sum(r["macs"] for r in rows)
    return rows, int(total_params), int(total_macs)


# ----------------------------------------------------------------------- training

class Augmenter:
    """Random crop (zero pad 4) + horizontal flip on uint8 NHWC batches, then normalise."""

    def __init__(self, generator, pad: int = 4) -> None:
        import torch

        self.g = generator
        self.pad = pad
        self.mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(STD).view(1, 3, 1, 1) * 255.0
        self.ar = torch.arange(32)

    def __call__(self, batch_u8, train: bool):
        import torch

        x = batch_u8
        if train:
            b, p = x.shape[0], self.pad
            padded = torch.nn.functional.pad(x, (0, 0, p, p, p, p))          # (B,40,40,3)
            oy = torch.randint(0, 2 * p + 1, (b,), generator=self.g)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=self.g)
            rows = (oy[:, None] + self.ar)[:, :, None]                       # (B,32,1)
            cols = (ox[:, None] + self.ar)[:, None, :]                       # (B,1,32)
            x = padded[torch.arange(b)[:, None, None], rows, cols]           # (B,32,32,3)
            flip = torch.rand(b, generator=self.g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        x = x.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)


def evaluate(model, images_u8: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Top-1 of the torch model on exactly the float input onnxruntime will see."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images_u8), batch):
            x = torch.from_numpy(preprocess_np(images_u8[i:i + batch]))
            pred = model(x.contiguous(memory_format=torch.channels_last)).argmax(1).numpy()
            correct += int((pred == labels[i:i + batch]).sum())
    return correct / len(images_u8)


def predict_torch(model, images_u8: np.ndarray, batch: int = 500) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(images_u8), batch):
            x = torch.from_numpy(preprocess_np(images_u8[i:i + batch]))
            outs.append(model(x.contiguous(memory_format=torch.channels_last)).numpy())
    return np.concatenate(outs)


def predict_onnx(path: Path, images_u8: np.ndarray, threads: int, batch: int = 500) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = []
    for i in range(0, len(images_u8), batch):
        outs.append(sess.run(["logits"], {"input": preprocess_np(images_u8[i:i + batch])})[0])
    return np.concatenate(outs)


def train(args, data: dict[str, np.ndarray], train_idx: np.ndarray, held_idx: np.ndarray):
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    widths = [int(w) for w in args.widths.split(",")]
    model = build_model(widths, args.fc, args.dropout).to(memory_format=torch.channels_last)
    rows, n_params, n_macs = layer_table(model)
    log(f"model: widths={widths} fc={args.fc} params={n_params:,} MACs/image={n_macs:,}")

    x_train = torch.from_numpy(data["train_images"][train_idx])
    y_train = torch.from_numpy(data["train_labels"][train_idx])
    n = len(x_train)
    steps_per_epoch = n // args.batch_size            # drop the ragged last batch
    aug = Augmenter(g)

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.999))
    total_steps = args.epochs * steps_per_epoch if not args.timing else max(args.timing, 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=total_steps, pct_start=args.warmup,
        div_factor=25.0, final_div_factor=1e3, anneal_strategy="cos")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    if args.timing:
        model.train()
        times = []
        for step in range(args.timing):
            idx = torch.randint(0, n, (args.batch_size,), generator=g)
            t0 = time.perf_counter()
            xb = aug(x_train[idx], train=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                loss = loss_fn(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            times.append(time.perf_counter() - t0)
        steady = times[min(3, len(times) - 1):]
        per_step = float(np.median(steady))
        log(f"timing: {args.timing} steps of {args.batch_size}; median {per_step:.3f}s/step "
            f"(mean {np.mean(steady):.3f}) -> {per_step * steps_per_epoch:.0f}s/epoch "
            f"for {steps_per_epoch} steps; loss {loss.item():.3f}")
        return None, rows, n_params, n_macs, [], per_step * steps_per_epoch

    held_x = data["train_images"][held_idx]
    held_y = data["train_labels"][held_idx]
    history = []
    epoch_times = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.time()
        perm = torch.randperm(n, generator=g)
        run_loss, run_correct, seen = 0.0, 0, 0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch_size:(s + 1) * args.batch_size]
            xb = aug(x_train[idx], train=True)
            yb = y_train[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                out = model(xb)
                loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item() * len(idx)
            run_correct += int((out.argmax(1) == yb).sum())
            seen += len(idx)
            if not math.isfinite(loss.item()):
                raise SystemExit(f"loss diverged at epoch {epoch} step {s}")
        train_s = time.time() - t0
        epoch_times.append(train_s)
        held_acc = None
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            held_acc = evaluate(model, held_x, held_y)
        rec = {"epoch": epoch, "train_loss": run_loss / seen, "train_acc": run_correct / seen,
               "pruning_set_acc": held_acc, "lr_end": sched.get_last_lr()[0],
               "epoch_seconds": train_s}
        history.append(rec)
        log(f"epoch {epoch:3d}/{args.epochs}  loss {rec['train_loss']:.4f}  "
            f"train(aug) {rec['train_acc']:.4f}  pruning-set "
            f"{'-' if held_acc is None else format(held_acc, '.4f')}  "
            f"{train_s:.0f}s (+{time.time() - t0 - train_s:.0f}s eval)")
    return model, rows, n_params, n_macs, history, float(np.mean(epoch_times))


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".." / "shared" / "datasets" / "cifar10",
                   help="folder holding train.tar.gz, test.tar.gz and SHA256SUMS")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "onnxcar" / "cifar10",
                   help="where archives are unpacked and decoded arrays / full npz sets are kept")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "samples", help="output folder")
    p.add_argument("--epochs", type=int, default=18, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="training seed (init, order, augmentation)")
    p.add_argument("--threads", type=int, default=2, help="torch / onnxruntime intra-op threads")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of steps spent warming up")
    p.add_argument("--weight-decay", type=float, default=5e-2, help="AdamW decoupled weight decay")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="cross-entropy label smoothing")
    p.add_argument("--dropout", type=float, default=0.3, help="dropout before fc6 and fc7")
    p.add_argument("--widths", default="48,96,192,160,128", help="conv1..conv5 output channels")
    p.add_argument("--fc", type=int, default=512, help="width of fc6 and fc7")
    p.add_argument("--amp", choices=("bf16", "none"), default="bf16",
                   help="bfloat16 autocast for training forward passes (weights, optimiser, "
                        "evaluation and export stay float32)")
    p.add_argument("--eval-every", type=int, default=5,
                   help="report pruning-set accuracy every N epochs (and after the last)")
    p.add_argument("--timing", type=int, default=0, metavar="N",
                   help="only time N training steps, print seconds/epoch, write nothing")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    import torch

    torch.set_num_threads(args.threads)
    data_dir, cache, out = args.data_dir.resolve(), args.cache.expanduser().resolve(), args.out.resolve()
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, data {data_dir}, cache {cache}")

    data = load_cifar10(data_dir, cache)
    held_idx, train_idx = split_pruning_set(data["train_labels"])
    log(f"train {len(train_idx)}, pruning (held out) {len(held_idx)}, test {len(data['test_labels'])}")

    model, rows, n_params, n_macs, history, sec_per_epoch = train(args, data, train_idx, held_idx)
    if model is None:  # --timing
        return 0
    train_wall = time.time() - t_start

    # ---- full pruning / test sets into the cache (not the repo)
    prune_x, prune_y = data["train_images"][held_idx], data["train_labels"][held_idx]
    test_x, test_y = data["test_images"], data["test_labels"]
    full_prune = cache / "cifar10_prune_5000.npz"
    full_test = cache / "cifar10_test_10000.npz"
    full_train = cache / "cifar10_train_45000.npz"  # the fine-tuning data of samples/README.md
    np.savez_compressed(full_prune, images=prune_x, labels=prune_y, train_indices=held_idx)
    np.savez_compressed(full_test, images=test_x, labels=test_y)
    np.savez(full_train, images=data["train_images"][train_idx], labels=data["train_labels"][train_idx].astype(np.int64))
    log(f"full pruning set: {full_prune}")
    log(f"full test set:    {full_test}")

    # ---- committed subsets
    out.mkdir(parents=True, exist_ok=True)
    t_sel = first_per_class(test_y, TEST_NPZ_PER_CLASS)
    p_sel = first_per_class(prune_y, PRUNE_NPZ_PER_CLASS)
    test_npz, prune_npz = out / "cifar10_test_2000.npz", out / "cifar10_prune_1000.npz"
    np.savez_compressed(test_npz, images=np.ascontiguousarray(test_x[t_sel]), labels=test_y[t_sel])
    np.savez_compressed(prune_npz, images=np.ascontiguousarray(prune_x[p_sel]), labels=prune_y[p_sel])

    # ---- export
    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    onnx_path = out / "alexnet_cifar10.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 32, 32),), str(onnx_path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    import onnx

    onnx.checker.check_model(onnx.load(str(onnx_path)))
    log(f"exported {onnx_path} ({onnx_path.stat().st_size:,} bytes)")

    # ---- torch vs onnxruntime on the same float inputs
    acc, test_logits_onnx = {}, None
    for key, x, y in (("test_10000", test_x, test_y), ("test_2000_npz", test_x[t_sel], test_y[t_sel]),
                      ("prune_1000_npz", prune_x[p_sel], prune_y[p_sel]),
                      ("prune_5000", prune_x, prune_y)):
        lt = predict_torch(model, x)
        lo = predict_onnx(onnx_path, x, args.threads)
        pt, po = lt.argmax(1), lo.argmax(1)
        if key == "test_10000":
            test_logits_onnx = lo
        acc[key] = {"n": int(len(y)), "torch_top1": float((pt == y).mean()),
                    "onnx_top1": float((po == y).mean()),
                    "prediction_disagreements": int((pt != po).sum()),
                    "max_abs_logit_diff": float(np.abs(lt - lo).max())}
        log(f"{key:15s} torch {acc[key]['torch_top1']:.4f}  onnx {acc[key]['onnx_top1']:.4f}  "
            f"disagree {acc[key]['prediction_disagreements']}  max|dlogit| {acc[key]['max_abs_logit_diff']:.2e}")
    if acc["test_10000"]["torch_top1"] != acc["test_10000"]["onnx_top1"]:
        log("WARNING: ONNX test accuracy differs from torch test accuracy")

    # per-class test accuracy (ONNX)
    po = test_logits_onnx.argmax(1)
    per_class = {CLASSES[c]: float((po[test_y == c] == c).mean()) for c in range(len(CLASSES))}

    sums = sha256_sums(data_dir)
    archives = {}
    for name in ("train.tar.gz", "test.tar.gz"):
        actual = file_sha256(data_dir / name)
        archives[name] = {"sha256": sums.get(name, actual), "verified": sums.get(name) == actual}

    total_wall = time.time() - t_start
    info = {
        "model": "alexnet_cifar10.onnx",
        "architecture": "AlexNet-style CNN for 32x32: 5 conv + 3 FC, ReLU, overlapping max-pool, "
                        "dropout before fc6/fc7, no BatchNorm",
        "layers": rows,
        "params": n_params,
        "macs_per_image": n_macs,
        "input": {"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32",
                  "layout": "NCHW", "colour": "RGB", "scale": "pixel / 255",
                  "mean": list(MEAN), "std": list(STD), "preprocess": "cifar10"},
        "output": {"name": "logits", "shape": ["batch", 10]},
        "classes": list(CLASSES),
        "command": "python " + " ".join([os.path.relpath(__file__, REPO_ROOT)] + sys.argv[1:]
                                        if argv is None else
                                        [os.path.relpath(__file__, REPO_ROOT)] + list(argv)),
        "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                            if k not in ("data_dir", "cache", "out", "timing")},
        "seed": args.seed,
        "split_seed": SPLIT_SEED,
        "epochs": args.epochs,
        "optimizer": "AdamW (no decay on biases), OneCycleLR cosine, label-smoothed cross-entropy",
        "mixed_precision": args.amp,
        "augmentation": "random crop 32 from zero-padded 40x40 + horizontal flip (p=0.5)",
        "seconds_per_epoch_mean": sec_per_epoch,
        "train_wall_seconds": train_wall,
        "total_wall_seconds": total_wall,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": __import__("onnxruntime").__version__,
        "python": platform.python_version(),
        "cpu_threads": args.threads,
        "sizes": {"train": int(len(train_idx)), "pruning": int(len(held_idx)),
                  "test": int(len(test_y))},
        "accuracy": acc,
        "test_top1_torch": acc["test_10000"]["torch_top1"],
        "test_top1_onnx": acc["test_10000"]["onnx_top1"],
        "test_per_class_onnx": per_class,
        "history": history,
        "files": {
            "alexnet_cifar10.onnx": {"bytes": onnx_path.stat().st_size, "sha256": file_sha256(onnx_path)},
            "cifar10_test_2000.npz": {"bytes": test_npz.stat().st_size, "sha256": file_sha256(test_npz),
                                      "selection": "first 200 test images of each class in sorted file order"},
            "cifar10_prune_1000.npz": {"bytes": prune_npz.stat().st_size, "sha256": file_sha256(prune_npz),
                                       "selection": "first 100 of each class of the held-out pruning set "
                                                    "(in training-file order)"},
        },
        "dataset": {"name": "CIFAR-10 (JPEG copy)", "archives": archives},
    }
    (out / "alexnet_cifar10.json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"wrote {out / 'alexnet_cifar10.json'}; total wall {total_wall / 60:.1f} min")
    print(f"FULL_PRUNING_NPZ={full_prune}")
    print(f"FULL_TEST_NPZ={full_test}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
