# GENERATED from solutions/ex07_quantization.py by `python -m course_lib.grading generate` - do not edit.
# (Course authors: edit solutions/ex07_quantization.py and regenerate. Students: replace each
# `raise NotImplementedError` below with your code.)
"""Exercises for notebook 07: int8 quantization and ONNX export of the distilled student.

Implement each function below with plain ``torch`` (and the standard library's ``io``). Do not
use ``course_lib`` (its ``compress`` module holds reference answers; the grader compares yours with
it and with torch's own quantization functions): a file that imports it scores zero. The grader
runs this file in a separate process with a time limit, and a function that modifies its input
tensors (or the model it is given) in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex07")

or from the repository root with ``python -m course_lib.grading exercises --only ex07``.

Notation. *Affine* (asymmetric) quantization stores a float tensor ``x`` as integers ``q`` in
``[qmin, qmax]`` (``0..255`` for unsigned 8 bits, ``-128..127`` for signed, ``0..127`` for the
7-bit range x86 int8 kernels use) with one *scale* ``s > 0`` (the float step between two
neighbouring integers) and one integer *zero point* ``zp`` (the integer that stands for the float
0) per tensor: ``x ~ (q - zp) * s``. Quantize: ``q = clamp(round(x / s) + zp, qmin, qmax)``;
dequantize: ``(q - zp) * s``. *Fake quantization* does both, so the result is a float tensor that
carries exactly the values int8 can represent (what quantization-aware training and the accuracy
of an int8 model are about). ``round`` is ``torch.round``: to the nearest integer, halves to even.
Logits are ``[n, C]`` for ``n`` inputs and ``C`` classes.
"""
import io  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)

import torch
from torch import nn


def quantization_params(x: torch.Tensor, qmin: int = 0, qmax: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor affine quantization parameters (scale, zero point) from the range of ``x``.

    Exactly what torch's ``MinMaxObserver`` (``qscheme=torch.per_tensor_affine``, with
    ``quant_min=qmin, quant_max=qmax``) computes after observing ``x``:

        min_neg    = min(x.min(), 0)        max_pos = max(x.max(), 0)
        scale      = max((max_pos - min_neg) / (qmax - qmin), eps)
        zero_point = clamp(qmin - round(min_neg / scale), qmin, qmax)

    with ``eps = torch.finfo(torch.float32).eps`` and ``round`` = ``torch.round``. The range
    ``[min_neg, max_pos]`` always contains 0, so that the float 0 (zero padding, a ReLU's many
    zero outputs) is stored exactly as the integer ``zero_point``: on an all-positive tensor (a
    ReLU's outputs) ``min_neg = 0`` and ``zero_point = qmin``, not ``x.min()``'s level. The range
    ``max_pos - min_neg`` is spread over the ``qmax - qmin`` steps between the smallest and the
    largest integer (``qmax - qmin``, not ``qmax``: the two differ for a signed range). The
    ``eps`` floor keeps the scale positive for a constant-zero tensor (range 0: without it the
    scale is 0 and ``min_neg / scale`` is 0 / 0). The zero point is an integer: round it (do not
    truncate it with ``int()`` or ``.to(torch.int64)`` alone), then clamp it (as torch does).
    Compute in float32, as the observer does.

    Args:
        x: a float tensor of any shape, not empty (e.g. a layer's weights or activations).
        qmin: the smallest integer, e.g. 0 (uint8) or -128 (int8).
        qmax: the largest integer, e.g. 255 (uint8), 127 (int8 or 7 bits).

    Returns:
        ``(scale, zero_point)``: ``scale`` a 0-dim ``torch.float32`` tensor, ``zero_point`` a 0-dim
        ``torch.int64`` tensor (torch's observer returns the same values as 1-element tensors).

    Raises:
        ValueError: if ``qmin >= qmax`` or ``x`` is empty.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement quantization_params()")


def fake_quantize(x: torch.Tensor, scale, zero_point, qmin: int = 0, qmax: int = 255) -> torch.Tensor:
    """Quantize ``x`` to integers in ``[qmin, qmax]`` and dequantize it back to floats.

        q = clamp(round(x / scale) + zero_point, qmin, qmax)
        return (q - zero_point) * scale

    as ``torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)`` computes it
    (torch multiplies by ``1 / scale`` instead of dividing: the two can differ in the last bit, so
    a value within a rounding error of a half-way point between two levels may land on the other
    one; the grader's inputs stay clear of those). Round to the nearest level (``torch.round``,
    not ``floor`` or truncation, which make every error one-sided and up to a whole step); add
    the zero point before clamping and subtract it again when dequantizing; clamp the *integers*
    ``q`` to ``[qmin, qmax]``, not ``x`` (``qmin``, ``qmax`` are integer levels, not floats).
    Values beyond the range saturate at ``(qmin - zero_point) * scale`` and ``(qmax - zero_point) *
    scale``; inside it the error ``|x - fake_quantize(x)|`` is at most ``scale / 2``; 0 comes back
    exactly 0.

    Args:
        x: a float tensor of any shape.
        scale: the step, a positive float or a 0-dim float tensor (as ``quantization_params`` returns).
        zero_point: an int or a 0-dim integer tensor in ``[qmin, qmax]``.
        qmin: the smallest integer level.
        qmax: the largest integer level.

    Returns:
        A float tensor of ``x``'s shape and dtype (``x`` is left unchanged).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement fake_quantize()")


def serialized_bytes(model: nn.Module) -> int:
    """What ``model`` costs on disk: the number of bytes ``torch.save(model.state_dict(), f)`` writes.

    Save the state dict into an in-memory file (``buffer = io.BytesIO()``) and count its bytes
    (``len(buffer.getvalue())``). The state dict holds every parameter *and every buffer* (a
    BatchNorm layer's running mean and variance and its ``num_batches_tracked`` counter, int64),
    each in its real dtype, plus the file's own overhead (the zip container, the pickled names and
    layout). So it is neither ``count_parameters(model) * 4`` (the "fp32 size" estimate, which
    forgets the buffers, assumes 4 bytes a value and ignores the container) nor the parameters
    alone, and certainly not ``sys.getsizeof(model)`` (the size of the Python object, a few dozen
    bytes, whatever the tensors hold). The model's mode and ``requires_grad`` flags do not change
    the state dict, so they do not change the result.
    (``course_lib.compress.size_on_disk`` saves the same state dict to a file, ``model.pt``: its count
    is a few bytes smaller, because torch names the zip archive inside after the file, ``model/...``,
    and an in-memory buffer's ``archive/...``.)

    Args:
        model: any ``nn.Module`` (left unchanged).

    Returns:
        The number of bytes, a Python ``int``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement serialized_bytes()")


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    """How closely ``candidate`` logits (an ONNX Runtime or int8 model's) match ``reference`` (torch's).

        max_rel_error  = max_{b,c} |candidate[b, c] - reference[b, c]| / max_{b,c} |reference[b, c]|
        top1_agreement = 100 * (1/n) * #{b : argmax_c candidate[b, c] == argmax_c reference[b, c]}

    The error is *relative* to the largest reference logit (its magnitude clamped below at
    ``1e-12``, so identical all-zero logits give 0): an absolute difference of 1e-3 is a rounding
    error for logits of size 100 and a disaster for logits of size 1e-3. It is one ratio of two
    maxima, not the maximum of element-wise ratios ``|d| / |reference|``, which blows up wherever
    a reference logit is near 0. The agreement is in percent (0 to 100, not a fraction), over the
    ``n`` rows: the argmax is over the classes, the last dimension (``dim=-1``), not over the batch.
    (``course_lib.compress.onnx_parity`` computes the same from a model and an ONNX Runtime session.)

    Args:
        reference: ``[n, C]`` logits, the model one trusts.
        candidate: ``[n, C]`` logits of the model under test on the same inputs.

    Returns:
        ``{"max_rel_error": float, "top1_agreement": float}``, Python floats (the inputs are left
        unchanged).

    Raises:
        ValueError: if either input is not 2-D or their shapes differ.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement parity()")
