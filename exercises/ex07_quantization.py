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
0) per tensor: integer ``q`` stands for the float ``(q - zp) * s``, a *level*. *Fake quantization*
maps each float to a level (quantize, then dequantize), so the result is a float tensor that carries
exactly the values int8 can represent (what quantization-aware training and the accuracy of an int8
model are about). Rounding is ``torch.round``: to the nearest integer, halves to even. Logits are
``[n, C]`` for ``n`` inputs and ``C`` classes.

The ladder (notebook 07's exercise cell gives points and times): ``fake_quantize`` and
``serialized_bytes`` (warm-up), ``quantization_params`` and ``parity`` (core),
``per_channel_fake_quantize`` (stretch: the per-tensor idea applied per output channel, as the
notebook's static int8 stores its weights). The grader names the common mistakes after a wrong answer.
"""
import io  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)

import torch
from torch import nn


def quantization_params(x: torch.Tensor, qmin: int = 0, qmax: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor affine quantization parameters (scale, zero point) from the range of ``x``: exactly what
    torch's ``MinMaxObserver`` (``qscheme=torch.per_tensor_affine``, ``quant_min=qmin``, ``quant_max=qmax``)
    computes after observing ``x``, in float32.

    Contract (the grader checks these and the values against the observer):

    - the float 0 is exactly a level (zero padding and a ReLU's many zeros are stored exactly), so the
      range the integers cover always contains 0: an all-positive ``x`` (a ReLU's outputs) gets the zero
      point ``qmin``, an all-negative one ``qmax``;
    - that range is spread over every step between ``qmin`` and ``qmax``: for an ``x`` whose values
      straddle 0, its smallest and largest values map to (about) ``qmin`` and ``qmax``, for signed and
      unsigned ranges alike;
    - the zero point is an integer in ``[qmin, qmax]``, the nearest one to where the float 0 falls;
    - the scale stays positive: a constant-zero ``x`` (or a range tinier than ``eps * (qmax - qmin)``)
      gets the scale ``eps = torch.finfo(torch.float32).eps``, and ``x = 0`` everywhere the zero point
      ``qmin``.

    Args:
        x: a float tensor of any shape, not empty (e.g. a layer's weights or activations).
        qmin: the smallest integer, e.g. 0 (uint8, the default) or -128 (int8).
        qmax: the largest integer, e.g. 255 (uint8, the default), 127 (int8 or 7 bits).

    Returns:
        ``(scale, zero_point)``: ``scale`` a 0-dim ``torch.float32`` tensor, ``zero_point`` a 0-dim
        ``torch.int64`` tensor (torch's observer returns the same values as 1-element tensors).

    Raises:
        ValueError: if ``qmin >= qmax`` or ``x`` is empty.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement quantization_params()")


def fake_quantize(x: torch.Tensor, scale, zero_point, qmin: int = 0, qmax: int = 255) -> torch.Tensor:
    """Fake quantization: map each value of ``x`` to a level of the grid ``(q - zero_point) * scale``,
    ``q`` an integer in ``[qmin, qmax]``, as ``torch.fake_quantize_per_tensor_affine(x, scale, zero_point,
    qmin, qmax)`` computes it (torch multiplies by ``1 / scale`` instead of dividing: the two can differ
    in the last bit, so a value within a rounding error of a half-way point between two levels may land
    on the other one; the grader's inputs stay clear of those).

    Contract (the grader checks these and the values against torch):

    - inside the range of the levels, each value goes to the NEAREST level: the error
      ``|x - fake_quantize(x)|`` is at most ``scale / 2``;
    - values beyond the range saturate at the lowest and the highest level (as int8 does);
    - 0 comes back exactly 0, every level comes back unchanged, so applying it twice changes nothing.

    Args:
        x: a float tensor of any shape.
        scale: the step, a positive float or a 0-dim float tensor (as ``quantization_params`` returns).
        zero_point: an int or a 0-dim integer tensor in ``[qmin, qmax]``.
        qmin: the smallest integer (default 0).
        qmax: the largest integer (default 255).

    Returns:
        A float tensor of ``x``'s shape and dtype (``x`` is left unchanged).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement fake_quantize()")


def serialized_bytes(model: nn.Module) -> int:
    """What ``model`` costs on disk, as notebook 07's section "Size, honestly" measures it: the number of
    bytes ``torch.save`` writes for ``model.state_dict()``, counted in memory (no file written).

    Contract (the grader checks these and the values):

    - every tensor of the state dict counts, each in its real dtype, and the file's own overhead too:
      a model whose BatchNorm buffers weigh as much as its parameters costs accordingly;
    - the model's mode (train or eval) and ``requires_grad`` flags change nothing;
    - a Python ``int``, the same for the same model every time.

    (``course_lib.compress.size_on_disk`` saves the same state dict to a file, ``model.pt``: its count is a
    few bytes smaller, because torch names the zip archive inside after the file, ``model/...``, and an
    in-memory file's ``archive/...``. The grader counts in memory.)

    Args:
        model: any ``nn.Module`` (left unchanged).

    Returns:
        The number of bytes, a Python ``int``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement serialized_bytes()")


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    """How closely ``candidate`` logits (an ONNX Runtime or int8 model's) match ``reference`` (torch's): the
    relative error and the top-1 agreement, as notebook 07's section "ONNX export, parity, ONNX Runtime"
    defines them (``course_lib.compress.onnx_parity`` computes the same from a model and a session).

    Contract (the grader checks these and the values):

    - the error is relative to the reference, the model one trusts: multiplying both logits by 1000 or
      by 1/1000 changes neither figure, and one reference logit near 0 does not blow it up;
    - the agreement is the percentage (0 to 100) of the ``n`` rows whose predicted class is the same;
    - identical logits give 0 and 100, all-zero ones included (the magnitude of the reference is
      clamped below at ``1e-12``);
    - worked example: ``reference = [[2, 0, 1], [0, -4, 1.5]]`` and ``candidate = [[2, 0.5, 1],
      [1.5, -4, 1.4]]`` give ``max_rel_error = 0.375`` and ``top1_agreement = 50``.

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


def per_channel_fake_quantize(weight: torch.Tensor, qmin: int = -128, qmax: int = 127) -> torch.Tensor:
    """Fake-quantize a layer's weight with one scale and zero point per OUTPUT channel, as notebook 07's
    static int8 stores its weights ("int8 weights, one scale per output channel").

    Apply the per-tensor idea of ``quantization_params`` and ``fake_quantize`` to each output channel on its
    own: the output channels are the first dimension of a ``Linear`` weight ``[out, in]`` and of a
    convolution's ``[out, in, kh, kw]``. The result is what torch's ``PerChannelMinMaxObserver``
    (``ch_axis=0``, ``qscheme=torch.per_channel_affine``) and ``torch.fake_quantize_per_channel_affine``
    give together.

    Contract (the grader checks these and the values against torch):

    - each output channel's error is at most half of ITS OWN step: a channel whose weights are 1000 times
      smaller than the others' keeps its shape (one scale for the whole tensor rounds most of it to 0);
    - an all-zero channel comes back all zeros;
    - the result does not depend on the other channels: changing one channel changes only its own output.

    Args:
        weight: ``[C_out, ...]``, a float tensor with at least 2 dimensions.
        qmin: the smallest integer (default -128, int8).
        qmax: the largest integer (default 127).

    Returns:
        A float tensor of ``weight``'s shape and dtype (``weight`` is left unchanged).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement per_channel_fake_quantize()")
