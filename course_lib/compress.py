"""Compression for deployment, measured: size on disk, latency, accuracy, int8 quantization, ONNX.

Everything a "smaller and faster" claim rests on is measured here, never estimated:

* **Size** is the bytes a model occupies once serialised (``torch.save`` of its ``state_dict``, or an
  ONNX file *plus* the external-data files it points to), not "fp32 size / 4". ``size_breakdown``
  splits a saved torch model's bytes into int8 values, quantization parameters, unquantized tensors
  and the container, so that a ratio short of 4x can be explained from the file itself.
* **Latency** is the median of several timed calls after a warm-up, with a spread (p10, p90), at a
  stated batch size and a stated thread count. Torch's intra-op thread count is set for the
  measurement and restored afterwards; an ONNX Runtime session's thread count is fixed when the
  session is created (``ort_session(path, threads=1)``) and read back from it. Tests never assert
  wall-clock thresholds; figures are printed and recorded.
* **Accuracy** is top-1 on a ``TensorData``, the same for a torch model and an ONNX Runtime session.

Choices, with torch 2.14.1:

* Static int8 in torch uses *eager* ``torch.ao.quantization`` (QuantStub/DeQuantStub wrapper, conv-BN-ReLU
  fused, observers calibrated on a few hundred training images, then converted). FX
  ``prepare_fx/convert_fx`` works too, but its graph is slower here and harder to read; the
  ``quantize_pt2e`` path no longer exists in torch.ao; torchao (the named successor) makes
  ``import transformers`` print warnings once installed, so it is not a dependency. ``torch.ao``
  announces its own deprecation with a ``DeprecationWarning`` (hidden by Python's default filters
  outside ``__main__``) and ``convert`` emits a ``UserWarning`` that quantized tensor dtypes are
  deprecated: both are about the API itself and are left visible, not silenced. The one warning
  with a fixable cause - observers built with ``reduce_range`` - is avoided by giving the observer
  ``quant_min/quant_max`` explicitly (0..127, the same 7-bit range ``reduce_range`` selects on x86).
* Dynamic int8 (``torch.ao.quantization.quantize_dynamic``): its default ``qconfig_spec`` for qint8
  maps ``nn.Linear``, ``nn.LSTM``, ``nn.GRU`` and the RNN/LSTM/GRU cells, so convolutions stay fp32
  unless asked for. ``torch.ao.nn.quantized.dynamic`` does have ``Conv1d/2d/3d`` (and transposed)
  modules, but neither the default ``qconfig_spec`` nor the default module mapping names them, and
  building one warns that it "has poor numerical accuracy and its use is not recommended".
  ``quantize_dynamic_int8`` asks for ``nn.Linear`` only and returns the replaced module names, so
  that what was (not) quantized is visible: on a CNN, the classifier.
* ONNX export uses ``torch.onnx.export``'s default (dynamo) exporter, which needs ``onnxscript``,
  with a dynamic batch axis. The weights go into the ``.onnx`` file unless ``external_data=True``
  (the exporter's own default writes a ``<file>.onnx.data`` beside it; ``size_on_disk`` counts both).
* ONNX Runtime quantization where it helps: static QDQ (calibrated activations) for CNNs, dynamic for
  MatMul/Gemm (transformers), both with 7-bit weights (``reduce_range``) by default because full
  8-bit weights can overflow ORT's int8 kernels on x86 CPUs without VNNI (see ``ort_quantize_static``).
  ``ort_quantize_dynamic`` defaults to MatMul/Gemm only: ORT's dynamic int8 convolutions
  (``ConvInteger``) are slow on CPU; notebook 07 measures both choices against the alternative on
  the machine it runs on.
* Parity between torch and ORT is a relative error (max |difference| / max |torch logit|) and top-1
  agreement: absolute differences mean nothing when logits are tiny or huge.

Longer than the package's ~500-line guide because it is one idea: one measured comparison of
deployment variants (size, latency, accuracy and parity are taken the same way for every variant,
float, int8, ONNX), which notebook 07 and its exercises read as a whole.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import TensorData
from .engine import logits_accuracy, predict_logits
from .models import count_parameters
from .modes import eval_mode
from .validation import check_tensor

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


# ----------------------------------------------------------------------------------------- size
def _onnx_external_files(path: Path) -> list[Path]:
    """The external-data files an ONNX file refers to (paths relative to its folder), unique."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    files = []
    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            f = path.parent / ExternalDataInfo(tensor).location
            if f not in files:
                files.append(f)
    return files


def size_on_disk(obj: nn.Module | str | os.PathLike) -> int:
    """Bytes on disk: a torch model's ``state_dict`` saved with ``torch.save``, or an ONNX file plus
    every external-data file it refers to (the ``.data`` file the exporter writes beside it)."""
    if isinstance(obj, nn.Module):
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "model.pt"
            torch.save(obj.state_dict(), f)
            return f.stat().st_size
    path = Path(obj)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    total = path.stat().st_size
    if path.suffix == ".onnx":
        for f in _onnx_external_files(path):
            if not f.is_file():
                raise FileNotFoundError(f"{path} refers to external data {f.name}, which is missing")
            total += f.stat().st_size
    return total


def _tensors(value):
    """The tensors inside a state-dict value: itself, or those of a (nested) tuple or list - a
    quantized Linear keeps ``(weight, bias)`` as one packed entry."""
    if torch.is_tensor(value):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


def size_breakdown(model: nn.Module) -> dict[str, int]:
    """Where the bytes of ``size_on_disk(model)`` go, measured from the saved state dict:

    * ``int8``: the integer values of quantized tensors (one byte per weight);
    * ``qparams``: their per-channel scales (float64) and zero points (int64), and the ``scale`` /
      ``zero_point`` entries of quantized modules (their output activations' parameters);
    * ``unquantized``: every other tensor at its own width - biases (kept fp32 by torch's quantized
      modules), layers left in fp32, batch-norm buffers;
    * ``container``: the rest of the file - the pickled structure, the zip record of every tensor and
      its alignment padding.

    The four add up to ``size_on_disk(model)``. A per-tensor quantized tensor's scale and zero point
    are pickled, so they fall under ``container``."""
    parts = {"int8": 0, "qparams": 0, "unquantized": 0}
    for key, value in model.state_dict().items():
        for t in _tensors(value):
            nbytes = t.numel() * t.element_size()
            if t.is_quantized:
                parts["int8"] += nbytes
                if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                   torch.per_channel_affine_float_qparams):
                    for q in (t.q_per_channel_scales(), t.q_per_channel_zero_points()):
                        parts["qparams"] += q.numel() * q.element_size()
            elif key.rsplit(".", 1)[-1] in ("scale", "zero_point"):
                parts["qparams"] += nbytes
            else:
                parts["unquantized"] += nbytes
    parts["container"] = size_on_disk(model) - sum(parts.values())
    return parts


def onnx_parameters(path: str | os.PathLike) -> int:
    """Number of values stored in an ONNX file's initializers (weights, and for a quantized model
    also its scales and zero points), leaving out int64 initializers: those are shape constants
    (the target shape of a flatten), not parameters."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type != onnx.TensorProto.INT64))


def torch_parameters(model: nn.Module) -> int:
    """Number of weights and biases of a torch model, quantized ones included (a quantized layer
    keeps them packed, outside ``model.parameters()``, so ``count_parameters`` would miss them)."""
    total = count_parameters(model)
    for m in model.modules():
        if callable(getattr(m, "weight", None)):   # torch.ao quantized Conv2d / Linear / dynamic Linear
            total += m.weight().numel()
            bias = m.bias() if callable(getattr(m, "bias", None)) else None
            total += 0 if bias is None else bias.numel()
    return total


# ------------------------------------------------------------------------------------ runtimes
def _is_session(obj) -> bool:
    return type(obj).__name__ == "InferenceSession" and hasattr(obj, "get_inputs")


def _session_threads(session) -> int:
    return int(session.get_session_options().intra_op_num_threads)


def _bound_call(target, batch: torch.Tensor) -> tuple[Callable[[], object], str]:
    """``(call, runtime)``: ``call()`` runs ``target`` on ``batch``, prepared the way each runtime is
    called in a serving loop. A torch model runs under ``inference_mode`` on the tensor. An ORT
    session gets the batch as numpy once and runs through an ``IOBinding`` (input bound once, outputs
    left in ORT's memory): what is timed is the model, not a torch-to-numpy copy and a dictionary
    per call (``session.run`` has a fixed per-call cost, even for an Identity graph, that binding
    mostly avoids; it matters for models as small as the course's student)."""
    if _is_session(target):
        binding = target.io_binding()
        binding.bind_cpu_input(target.get_inputs()[0].name, np.ascontiguousarray(batch.numpy()))
        for out in target.get_outputs():
            binding.bind_output(out.name)
        def run_bound():
            target.run_with_iobinding(binding)
            return binding                      # its outputs: binding.copy_outputs_to_cpu()
        return run_bound, "onnxruntime"
    if isinstance(target, nn.Module):
        def run():
            with torch.inference_mode():
                return target(batch)
        return run, "torch"
    if callable(target):
        return (lambda: target(batch)), "callable"
    raise TypeError(f"expected a torch model, an onnxruntime InferenceSession or a callable, got {type(target)}")


def ort_session(path: str | os.PathLike, threads: int = 1):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (and one inter-op thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_logits(session, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of an ORT session on ``x``, in batches, as a torch tensor."""
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: x[i:i + batch_size].numpy()})[0] for i in range(0, len(x), batch_size)]
    return torch.from_numpy(np.concatenate(outs))


def logits_of(model_or_session, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of a torch model (in eval mode for the call) or of an ORT session."""
    if _is_session(model_or_session):
        return ort_logits(model_or_session, x, batch_size)
    with eval_mode(model_or_session):
        return predict_logits(model_or_session, x, batch_size).float()


def model_accuracy(model_or_session, data: TensorData, batch_size: int = 1000) -> float:
    """Top-1 accuracy (percent) of a torch model or an ORT session on ``data``."""
    return logits_accuracy(logits_of(model_or_session, data.x, batch_size), data.y)


# ------------------------------------------------------------------------------------- latency
@dataclasses.dataclass(frozen=True)
class Latency:
    """Per-call latency in milliseconds: median and spread over ``repeats`` timed calls."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    batch_size: int
    threads: int
    repeats: int
    runtime: str

    def __str__(self) -> str:
        return (f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}; batch {self.batch_size}, "
                f"{self.threads} thread{'s' if self.threads != 1 else ''}, {self.runtime}, {self.repeats} runs)")


def measure_latency(target, batch: torch.Tensor, *, warmup: int = 10, repeats: int = 50,
                    threads: int | None = 1) -> Latency:
    """Time ``target`` on ``batch`` (a torch model, an ORT session or a callable taking a tensor;
    each runtime called as in a serving loop, see ``_bound_call``).

    ``warmup`` untimed calls first, then ``repeats`` timed ones; returns their median and 10th/90th
    percentiles. For torch (and plain callables) the intra-op thread count is set to ``threads``
    for the measurement and restored afterwards (``None``: leave it as it is). An ORT session's
    thread count was fixed when it was created: it is read back, and a different ``threads`` is an
    error rather than a silently wrong label.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    call, runtime = _bound_call(target, batch)
    previous = torch.get_num_threads()
    if runtime == "onnxruntime":
        used = _session_threads(target)
        if threads is not None and used not in (threads, 0):
            raise ValueError(f"the session runs {used} intra-op threads, not {threads}: "
                             f"create it with ort_session(path, threads={threads})")
        if used == 0:
            raise ValueError("the session's intra-op thread count is ORT's default (0 = all cores); "
                             "create it with ort_session(path, threads=...) so that the count is stated")
    else:
        if threads is not None:
            torch.set_num_threads(threads)
        used = torch.get_num_threads()
    try:
        for _ in range(warmup):
            call()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(previous)
    q = np.percentile(times, [10, 90])
    return Latency(statistics.median(times), float(q[0]), float(q[1]), int(batch.shape[0]), used, repeats, runtime)


# --------------------------------------------------------------------------- torch int8 (PTQ)
def _module_form(model: nn.Module) -> nn.Module:
    """``model`` as a network of modules only (eager quantization swaps modules, it cannot see
    ``torch.relu`` called in a ``forward``): ``StudentCNN`` becomes the equivalent
    conv-ReLU-conv-ReLU-flatten-linear ``nn.Sequential``; ``TeacherCNN`` already is one."""
    from .models import StudentCNN, TeacherCNN

    model = copy.deepcopy(model).cpu().eval()
    if type(model) is StudentCNN:
        return nn.Sequential(model.conv1, nn.ReLU(), model.conv2, nn.ReLU(), nn.Flatten(), model.fc).eval()
    if type(model) is TeacherCNN:
        return model
    raise TypeError(f"quantize_static_int8 handles the course's StudentCNN and TeacherCNN (modules only, no "
                    f"residual additions); for {type(model).__name__} export it to ONNX and use "
                    f"ort_quantize_static, which quantizes the graph")


def _fusion_groups(model: nn.Module) -> list[list[str]]:
    """Names of conv-BN(-ReLU), conv-ReLU and linear-ReLU runs inside ``nn.Sequential`` blocks."""
    patterns = [(nn.Conv2d, nn.BatchNorm2d, nn.ReLU), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv2d, nn.ReLU),
                (nn.Linear, nn.ReLU)]
    groups = []
    for prefix, block in model.named_modules():
        if not isinstance(block, nn.Sequential):
            continue
        children = list(block.named_children())
        i = 0
        while i < len(children):
            for pattern in patterns:
                run = children[i:i + len(pattern)]
                if len(run) == len(pattern) and all(type(m) is t for (_, m), t in zip(run, pattern)):
                    groups.append([f"{prefix}.{name}" if prefix else name for name, _ in run])
                    i += len(pattern)
                    break
            else:
                i += 1
    return groups


def _static_qconfig():
    """x86 defaults (histogram observer for activations, per-channel symmetric weights), with the
    activation range given as quant_min/quant_max = 0..127 (what ``reduce_range=True`` selects, and
    what avoids int8 overflow in x86 kernels without VNNI) instead of the deprecated flag."""
    from torch.ao.quantization import HistogramObserver, QConfig, default_per_channel_weight_observer

    return QConfig(activation=HistogramObserver.with_args(dtype=torch.quint8, quant_min=0, quant_max=127),
                   weight=default_per_channel_weight_observer)


def quantize_static_int8(model: nn.Module, calibration_data: TensorData | torch.Tensor,
                         batch_size: int = 100) -> nn.Module:
    """Post-training static int8 of the course's CNNs (``StudentCNN``, ``TeacherCNN``): fuse
    conv-BN-ReLU / conv-ReLU / linear-ReLU, calibrate activation ranges on ``calibration_data`` (a
    few hundred training images are enough), convert. ``model`` is left unchanged; the result is
    ``Sequential(QuantStub, network, DeQuantStub)`` on CPU with the ``x86`` quantized engine (set
    globally, as torch requires; ``qnnpack`` on ARM)."""
    from torch.ao import quantization as tq

    x = calibration_data.x if isinstance(calibration_data, TensorData) else calibration_data
    # x86 (fbgemm + onednn) where available; qnnpack on ARM. The 0..127 activation range suits both.
    engines = torch.backends.quantized.supported_engines
    torch.backends.quantized.engine = "x86" if "x86" in engines else "qnnpack"
    network = _module_form(model)
    groups = [[f"1.{name}" for name in g] for g in _fusion_groups(network)]
    q = nn.Sequential(tq.QuantStub(), network, tq.DeQuantStub()).eval()
    q.qconfig = _static_qconfig()
    tq.fuse_modules(q, groups, inplace=True)
    tq.prepare(q, inplace=True)
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            q(x[i:i + batch_size])
    tq.convert(q, inplace=True)
    return q


def quantize_dynamic_int8(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Dynamic int8 (weights int8, activations quantized on the fly) of every ``nn.Linear``, through
    ``quantize_dynamic(model, {nn.Linear})``: the default mapping's choice for a CNN, where its other
    entries (LSTM, GRU, RNN cells) do not occur.

    Returns the quantized copy and the names of the modules it replaced: on a CNN only the
    Linear layers; the convolutions stay fp32 (dynamic ``Conv2d`` modules exist in
    ``torch.ao.nn.quantized.dynamic`` but are used only when a mapping names them)."""
    from torch.ao.quantization import quantize_dynamic

    q = quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)
    before = dict(model.named_modules())
    replaced = [name for name, m in q.named_modules() if name in before and type(m) is not type(before[name])]
    return q, replaced


# --------------------------------------------------------------------------------------- ONNX
def _require_onnxscript() -> None:
    try:
        importlib.import_module("onnxscript")
    except ImportError as err:
        raise ImportError("torch.onnx.export (the dynamo exporter, torch's default) needs onnxscript: "
                          "pip install onnxscript") from err


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, *,
                external_data: bool = False) -> Path:
    """Export ``model`` (in eval mode) to ONNX at ``path`` with a dynamic batch axis.

    Input ``"input"`` is ``[batch, *example.shape[1:]]``, output ``"logits"``. With
    ``external_data=True`` the weights go to ``<path>.data`` beside the file. Refuses a model in
    training mode, an ``example`` the model cannot take, and a missing onnxscript, each with a
    message that says what to do."""
    if model.training:
        raise ValueError("the model is in training mode (dropout/batch-norm behave differently); call "
                         "model.eval() before exporting")
    _require_onnxscript()
    if example.dim() < 1 or example.shape[0] < 1:
        raise ValueError(f"example must be a batch of inputs, got shape {tuple(example.shape)}")
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and (example.dim() != 4 or example.shape[1] != conv.in_channels):
        raise ValueError(f"example of shape {tuple(example.shape)} does not match the model, which expects "
                         f"[batch, {conv.in_channels}, H, W]")
    try:
        with torch.inference_mode():
            model(example)
    except RuntimeError as err:
        raise ValueError(f"example of shape {tuple(example.shape)} does not match the model: {err}") from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if example.shape[0] == 1:   # torch.export specialises a size-1 axis; a batch of 2 keeps it symbolic
        example = example.expand(2, *example.shape[1:]).contiguous()
    torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=external_data,
                      verbose=False)
    return path


def onnx_parity(model: nn.Module, session, x: torch.Tensor) -> dict[str, float]:
    """Compare a torch model and an ORT session on ``x``: ``max_rel_error`` (max |difference| divided
    by max |torch logit|) and ``top1_agreement`` (percent of inputs with the same predicted class)."""
    check_tensor("x", x, floating=False, min_dims=1, layout="[n, ...] (a batch of inputs)")
    ref = logits_of(model, x)
    got = logits_of(session, x)
    scale = ref.abs().max().clamp_min(1e-12)
    return {"max_rel_error": float((ref - got).abs().max() / scale),
            "top1_agreement": 100.0 * float((ref.argmax(-1) == got.argmax(-1)).float().mean())}


# ------------------------------------------------------------------------- ORT quantization
def _preprocess(fp32_path: str | os.PathLike, out_path: Path) -> Path:
    """ORT's recommended step before quantizing (and the cause of its "consider pre-processing"
    warning when skipped): graph optimisation and shape inference, so that every tensor to be
    quantized has a known shape."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path))
    return out_path


class _CalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a tensor of images, in batches."""

    def __init__(self, x: torch.Tensor, input_name: str, batch_size: int):
        self._batches = iter([{input_name: x[i:i + batch_size].numpy()} for i in range(0, len(x), batch_size)])

    def get_next(self):
        return next(self._batches, None)


def ort_quantize_static(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                        calibration_data: TensorData | torch.Tensor, *, batch_size: int = 50,
                        per_channel: bool = True, reduce_range: bool = True) -> Path:
    """Static int8 QDQ quantization of an ONNX CNN (uint8 activations, int8 per-channel weights;
    activation ranges calibrated on ``calibration_data``, a few hundred training images).

    ``reduce_range=True`` stores weights in 7 bits. On x86 CPUs without VNNI (AVX2 only) ORT's
    uint8 x int8 convolution kernels can saturate their 16-bit intermediate sums with full 8-bit
    weights, which can cost accuracy whatever the calibration method; with VNNI, ORT's documentation
    calls the reduction often unnecessary.
    The default protects the accuracy claim of notebook 07 on any x86 machine; the notebook measures
    ``reduce_range=False`` beside it. torch's x86 backend avoids the same overflow by reducing its
    activation range."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    x = calibration_data.x if isinstance(calibration_data, TensorData) else calibration_data
    reader = type("CalibrationReader", (_CalibrationReader, CalibrationDataReader), {})(x, INPUT_NAME, batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = _preprocess(fp32_path, Path(tmp) / "prepared.onnx")
        quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return Path(out_path)


def ort_quantize_dynamic(fp32_path: str | os.PathLike, out_path: str | os.PathLike, *,
                         op_types: Sequence[str] = ("MatMul", "Gemm"), reduce_range: bool = True) -> Path:
    """Dynamic int8 of an ONNX model's MatMul/Gemm weights (where it pays: transformer and MLP layers).
    Convolutions are left alone by default: ORT turns them into ``ConvInteger``, slow on CPU (notebook
    07 measures it; pass ``op_types=("Conv", "MatMul", "Gemm")`` to see). 7-bit weights by default
    for the reason given in ``ort_quantize_static``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        prepared = _preprocess(fp32_path, Path(tmp) / "prepared.onnx")
        quantize_dynamic(str(prepared), str(out_path), op_types_to_quantize=list(op_types),
                         reduce_range=reduce_range, weight_type=QuantType.QInt8)
    return Path(out_path)


# ---------------------------------------------------------------------------- comparison
@dataclasses.dataclass
class Variant:
    """One deployable form of a model: what runs (a torch model or an ORT session), what is stored
    (the torch model or the ONNX path; defaults to the model), and its parameter count (defaults to
    ``torch_parameters`` for a torch model, ``onnx_parameters`` for an ONNX file)."""

    name: str
    runner: object
    artifact: object = None
    parameters: int | None = None


def comparison_table(variants: Iterable[Variant], data: TensorData, *, batch_sizes: Sequence[int] = (1, 64),
                     threads: int = 1, warmup: int = 10, repeats: int = 50) -> list[dict]:
    """One row per variant: ``name, bytes, parameters``, for each batch size ``k`` in ``batch_sizes``
    ``latency_b<k>_ms`` (the median) with its spread ``latency_b<k>_p10_ms`` and ``latency_b<k>_p90_ms``,
    ``threads`` and ``accuracy`` (percent on ``data``)."""
    rows = []
    for v in variants:
        artifact = v.runner if v.artifact is None else v.artifact
        params = v.parameters
        if params is None:
            params = torch_parameters(artifact) if isinstance(artifact, nn.Module) else onnx_parameters(artifact)
        row = {"name": v.name, "bytes": size_on_disk(artifact), "parameters": params}
        for b in batch_sizes:
            lat = measure_latency(v.runner, data.x[:b], warmup=warmup, repeats=repeats, threads=threads)
            row[f"latency_b{b}_ms"], row[f"latency_b{b}_p10_ms"], row[f"latency_b{b}_p90_ms"] = \
                lat.median_ms, lat.p10_ms, lat.p90_ms
        row["threads"] = threads
        row["accuracy"] = model_accuracy(v.runner, data)
        rows.append(row)
    return rows
