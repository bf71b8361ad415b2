"""The classic ImageNet models shipped in the onnx wheel (``onnx/backend/test/data/light``).

In the wheel their weights are ``ConstantOfShape`` nodes (every weight = 0.02).
:func:`load_classic` turns each ConstantOfShape-produced tensor into a seeded
random initializer of the same shape and removes the ConstantOfShape nodes
(and their ``*__SHAPE`` shape initializers); every other node is kept as is
(opset 9, ``Sum``, ``LRN``, ``Dropout`` with 2 outputs, ``Unsqueeze`` of weights
feeding ``Mul``/``Add`` "scale layers" in densenet121 / inception_v2, a
``Reshape`` of the classifier weight ``[1,1,1000,1024] -> [1000,1024]`` in
inception_v1, grouped convs (alexnet group=2; shufflenet group=4 and depthwise),
shufflenet's channel shuffles, baked-in ``Reshape`` shapes, final ``Softmax``).

Weights are chosen by the consumer:

* Conv / Gemm weights: normal, std ``sqrt(2 / fan_in)`` (He), biases N(0, 0.01);
* BatchNormalization: scale U(0.5, 1.5), bias N(0, 0.1); running mean / var are
  calibrated on one random image (``calibrate_bn=True``, default) -- without that
  resnet50 / shufflenet logits reach 1e5..1e6 -- else mean N(0, 0.1), var U(0.5, 1.5);
* Caffe "scale layer" tensors (``Unsqueeze`` -> ``Mul`` / ``Add``): U(0.5, 1.5) / N(0, 0.1).

Other normalisations done to fit the zoo contract:

* the data input is renamed ``input`` and the final output ``output``
  (``rename_io=False`` keeps the original names);
* graph inputs that were initializers (IR 3 style) are dropped from
  ``graph.input``; ``ir_version`` is raised to 4 so that is legal;
* models whose graph never bakes in the batch size get a dynamic ``batch``
  dim; the others (``FIXED_BATCH``: their ``Reshape`` shape constants start
  with 1, e.g. ``[1, 9216]``, ``[1, 4, 28, 56, 56]``) keep ``[1, 3, 224, 224]``
  unless ``dynamic_batch=True``, which rewrites those leading 1s to 0
  ("copy from input", allowzero=0) and makes the batch dim dynamic.

All inputs are 3x224x224.
"""

from __future__ import annotations

import functools
import math
import os
from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["CLASSIC_NAMES", "FIXED_BATCH", "DYNAMIC_BATCH", "INPUT_CHW", "load_classic", "classic_path"]

_LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")

#: zoo name -> file in onnx/backend/test/data/light
_FILES = {
    "alexnet": "light_bvlc_alexnet.onnx",
    "resnet50": "light_resnet50.onnx",
    "densenet121": "light_densenet121.onnx",
    "inception_v1": "light_inception_v1.onnx",
    "inception_v2": "light_inception_v2.onnx",
    "shufflenet": "light_shufflenet.onnx",
    "squeezenet": "light_squeezenet.onnx",
    "vgg19": "light_vgg19.onnx",
    "zfnet512": "light_zfnet512.onnx",
}

CLASSIC_NAMES: list[str] = list(_FILES)

#: models whose graph bakes batch = 1 into Reshape shape constants (cannot run at batch 3
#: as loaded; ``load_classic(name, dynamic_batch=True)`` fixes that)
FIXED_BATCH: set[str] = {"alexnet", "resnet50", "inception_v1", "inception_v2", "shufflenet",
                         "vgg19", "zfnet512"}
#: models that get a dynamic batch dim by default
DYNAMIC_BATCH: set[str] = set(CLASSIC_NAMES) - FIXED_BATCH

INPUT_CHW = (3, 224, 224)


def classic_path(name: str) -> str:
    return os.path.join(_LIGHT_DIR, _FILES[name])


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for n in graph.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = new
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def _set_batch(vi: onnx.ValueInfoProto, batch) -> None:
    d = vi.type.tensor_type.shape.dim[0]
    d.Clear()
    if isinstance(batch, str):
        d.dim_param = batch
    else:
        d.dim_value = batch


@functools.lru_cache(maxsize=None)
def _load_bytes(name: str, seed: int, rename_io: bool, dynamic_batch: bool,
                fold_unsqueeze: bool, calibrate_bn: bool) -> bytes:
    if name not in _FILES:
        raise KeyError(f"unknown classic model {name!r}; known: {CLASSIC_NAMES}")
    model = onnx.load(classic_path(name))
    g = model.graph
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in g.initializer}

    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for n in g.node:
        for k, x in enumerate(n.input):
            consumers[x].append((n, k))

    def attr(node, key, default):
        for a in node.attribute:
            if a.name == key:
                return helper.get_attribute_value(a)
        return default

    def normal(std, shape):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def uniform(lo, hi, shape):
        return rng.random(shape, dtype=np.float32) * np.float32(hi - lo) + np.float32(lo)

    def sample(out_name: str, shape: tuple[int, ...]) -> np.ndarray:
        uses = consumers.get(out_name, [])
        node, k = uses[0] if uses else (None, -1)
        op = node.op_type if node is not None else ""
        view = shape
        if op == "Reshape" and k == 0 and node.input[1] in inits:  # inception_v1: W[1,1,1000,1024] -> Gemm
            view = tuple(int(v) for v in numpy_helper.to_array(inits[node.input[1]]))
            nxt = consumers.get(node.output[0], [])
            node, k = nxt[0] if nxt else (None, -1)
            op = node.op_type if node is not None else ""
        if op == "Unsqueeze":  # Caffe scale layer: Unsqueeze -> Mul (scale) / Add (shift)
            nxt = consumers.get(node.output[0], [])
            op = nxt[0][0].op_type if nxt else ""
            if op == "Mul":
                return uniform(0.5, 1.5, shape)
            return normal(0.1, shape)
        if op == "BatchNormalization":
            if k in (1, 4):  # scale, var
                return uniform(0.5, 1.5, shape)
            return normal(0.1, shape)  # bias, mean
        if op in ("Conv", "Gemm") and k == 1:
            if op == "Conv":
                fan_in = int(np.prod(view[1:]))
            else:
                fan_in = view[0] if attr(node, "transB", 0) == 0 else view[1]
            return normal(math.sqrt(2.0 / max(fan_in, 1)), shape)
        if op in ("Conv", "Gemm") and k == 2:
            return normal(0.01, shape)
        return normal(0.1, shape)

    new_nodes, new_inits = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape":
            new_nodes.append(n)
            continue
        shape_name = n.input[0]
        shape = tuple(int(s) for s in numpy_helper.to_array(inits[shape_name]))
        value = attr(n, "value", None)
        dtype = helper.tensor_dtype_to_np_dtype(value.data_type) if value is not None else np.float32
        new_inits.append((n.output[0], sample(n.output[0], shape).astype(dtype, copy=False)))

    # drop the *__SHAPE initializers and any other initializer no node uses
    still_used = {x for n in new_nodes for x in n.input}
    kept_inits = [t for t in g.initializer if t.name in still_used]
    del g.node[:]
    g.node.extend(new_nodes)
    kept_inits = [_copy(t) for t in kept_inits]  # detach before clearing
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    for tname, arr in new_inits:  # build in place: avoids copying ~0.5 GB of vgg19 weights twice
        t = g.initializer.add()
        t.name = tname
        t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        t.raw_data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    del new_inits

    init_names = {t.name for t in g.initializer}
    data_inputs = [vi for vi in g.input if vi.name not in init_names and vi.name in still_used]
    assert len(data_inputs) == 1, [vi.name for vi in data_inputs]
    data = onnx.ValueInfoProto()
    data.CopyFrom(data_inputs[0])
    del g.input[:]
    g.input.append(data)
    model.ir_version = max(model.ir_version, 4)

    if calibrate_bn:
        _calibrate_bn(model, rng)

    if fold_unsqueeze:
        _fold_constant_unsqueeze(g)

    if rename_io:
        _rename(g, g.input[0].name, "input")
        if len(g.output) == 1:
            _rename(g, g.output[0].name, "output")

    batch_fixed = name in FIXED_BATCH
    if dynamic_batch and batch_fixed:
        inits = {t.name: t for t in g.initializer}
        for n in g.node:
            if n.op_type == "Reshape" and n.input[1] in inits and n.input[0] not in inits:
                arr = numpy_helper.to_array(inits[n.input[1]]).copy()
                if arr.size and arr[0] == 1:
                    arr[0] = 0
                    inits[n.input[1]].CopyFrom(numpy_helper.from_array(arr, n.input[1]))
        batch_fixed = False
    if not batch_fixed:
        for vi in list(g.input) + list(g.output):
            _set_batch(vi, "batch")
        del g.value_info[:]

    model.producer_name = f"onnxcar-zoo classic ({model.producer_name})"
    return model.SerializeToString()


def _calibrate_bn(model: onnx.ModelProto, rng: np.random.Generator) -> None:
    """Set BatchNormalization running mean / var to the statistics of its input on one random image.

    Without this, random running stats do not normalise anything and the residual
    nets blow up (resnet50 / shufflenet logits ~1e5..1e6, softmax saturated).
    Exact in a single onnxruntime run: in a probe copy every BN is replaced by
    InstanceNormalization with the same scale/bias, which at batch 1 is precisely
    what the BN computes once its running stats equal the per-channel stats of its
    input; the probe also outputs every BN input, whose stats are then stored.
    """
    import onnxruntime as ort

    g = model.graph
    bns = [n for n in g.node if n.op_type == "BatchNormalization"]
    if not bns:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for n in probe.graph.node:
        if n.op_type == "BatchNormalization":
            eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
            x, scale, bias = n.input[:3]
            out = n.output[0]
            n.Clear()
            n.CopyFrom(helper.make_node("InstanceNormalization", [x, scale, bias], [out], epsilon=eps))
    probe_names = list(dict.fromkeys(bn.input[0] for bn in bns))
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=nm) for nm in probe_names)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    del probe
    x = rng.standard_normal((1, *INPUT_CHW), dtype=np.float32)
    acts = dict(zip(probe_names, sess.run(None, {g.input[0].name: x})))
    inits = {t.name: t for t in g.initializer}
    for bn in bns:
        a = acts[bn.input[0]].astype(np.float64)
        mean = a.mean(axis=(0, 2, 3)).astype(np.float32)
        var = np.maximum(a.var(axis=(0, 2, 3)), 1e-3).astype(np.float32)
        inits[bn.input[3]].CopyFrom(numpy_helper.from_array(mean, bn.input[3]))
        inits[bn.input[4]].CopyFrom(numpy_helper.from_array(var, bn.input[4]))


def _fold_constant_unsqueeze(g: onnx.GraphProto) -> None:
    """Replace ``Unsqueeze(initializer)`` (opset < 13, axes attribute) by an initializer."""
    inits = {t.name: t for t in g.initializer}
    keep = []
    for n in g.node:
        if n.op_type == "Unsqueeze" and n.input[0] in inits and len(n.input) == 1:
            axes = next(helper.get_attribute_value(a) for a in n.attribute if a.name == "axes")
            arr = numpy_helper.to_array(inits[n.input[0]])
            for ax in sorted(a if a >= 0 else a + arr.ndim + len(axes) for a in axes):
                arr = np.expand_dims(arr, ax)
            g.initializer.append(numpy_helper.from_array(arr, n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    used = {x for n in g.node for x in n.input}
    alive = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(alive)


def load_classic(name: str, *, seed: int = 0, rename_io: bool = True, dynamic_batch: bool = False,
                 fold_unsqueeze: bool = False, calibrate_bn: bool = True) -> onnx.ModelProto:
    """Load classic model ``name`` (see CLASSIC_NAMES) with seeded random weights.

    ``dynamic_batch``: also make FIXED_BATCH models batch-dynamic (rewrites Reshape consts).
    ``fold_unsqueeze``: fold ``Unsqueeze(weight)`` (densenet121 / inception_v2 scale layers)
    into plain ``[C,1,1]`` initializers.
    ``calibrate_bn``: set BN running stats from one random 224x224 image (one
    onnxruntime run; see :func:`_calibrate_bn`), so activations/logits stay O(1..10).
    Cached per process; returns a fresh copy.
    """
    return onnx.load_from_string(
        _load_bytes(name, seed, rename_io, dynamic_batch, fold_unsqueeze, calibrate_bn))
