# GENERATED from solutions/ex02_kd_loss.py by `python -m course_lib.grading generate` - do not edit.
# (Course authors: edit solutions/ex02_kd_loss.py and regenerate. Students: replace each
# `raise NotImplementedError` below with your code.)
"""Exercises for notebook 02: the knowledge-distillation loss.

Implement each function below with plain ``torch`` (``torch.nn.functional`` is fine). Do not use
``course_lib`` (its ``losses`` module holds the reference answers the grader compares yours with):
a file that imports it scores zero. The grader runs this file in a separate process with a time
limit, and a function that modifies its input tensors in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex02")

or from the repository root with ``python -m course_lib.grading exercises``.

Notation: ``z_s`` student logits and ``z_t`` teacher logits, both ``[B, C]`` (a batch of ``B``
examples, ``C`` classes); ``y`` the true classes ``[B]``; ``T > 0`` the temperature;
``p_s^T = softmax(z_s / T)``, ``p_t^T = softmax(z_t / T)``; ``log`` is the natural log.

The two KL divergences between the tempered distributions (per example, summed over classes):

    forward  KL(p_t || p_s) = sum_k p_t[k] * (log p_t[k] - log p_s[k])
    reverse  KL(p_s || p_t) = sum_k p_s[k] * (log p_s[k] - log p_t[k])

The ladder (notebook 02's exercise cell gives points and times): ``reverse_kl`` (warm-up), ``kd_loss``
(core), ``kd_gradient`` and ``logit_matching_limit`` (stretch: derivations on paper, checked by
their consequences). The grader names the common mistakes after a wrong answer.
"""
import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """Hinton's knowledge-distillation loss (Hinton, Vinyals & Dean 2015, arXiv:1503.02531), as notebook 02's
    section "The loss" defines it, averaged over the batch.

    Contract: a weighted sum of two terms, weights ``alpha`` and ``1 - alpha``:

    - the soft term: the forward KL (teacher first) between the tempered distributions, scaled by the
      factor that keeps its gradient's size unchanged as ``T`` changes (the notebook measures why it
      is needed);
    - the hard term: the cross-entropy with the true labels, at temperature 1.

    What must hold (the grader checks these and the values): ``alpha = 0`` is plain cross-entropy
    whatever ``T``; a student equal to its teacher has a soft term of 0; the gradient's norm with
    respect to the student logits barely changes between ``T = 10`` and ``T = 20`` at ``alpha = 1``.

    Args:
        student_logits: ``[B, C]``, the student's logits ``z_s`` (gradients flow through them).
        teacher_logits: ``[B, C]``, the teacher's logits ``z_t``.
        targets: ``[B]`` integer class indices ``y`` (the grader always passes them; the course's own
            ``kd_loss`` also accepts ``None`` at ``alpha = 1``, which the notebook uses, but yours need not).
        temperature: ``T > 0``.
        alpha: weight in ``[0, 1]`` of the soft (distillation) term; ``alpha = 0`` is plain
            cross-entropy training, ``alpha = 1`` pure distillation.

    Returns:
        A scalar (0-dim) tensor, differentiable with respect to ``student_logits``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement kd_loss()")


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reverse KL, ``KL(p_s^T || p_t^T)`` (student first), averaged over the batch: just the divergence,
    no scale factor and no cross-entropy term.

    Worked example to test yours with: ``p_s = [0.9, 0.1]`` and ``p_t = [0.5, 0.5]`` (at ``T = 1``) give
    ``KL(p_s || p_t) = 0.368`` and ``KL(p_t || p_s) = 0.511``: the two directions differ.

    Args:
        student_logits: ``[B, C]``, ``z_s``.
        teacher_logits: ``[B, C]``, ``z_t``.
        temperature: ``T > 0``.

    Returns:
        A scalar (0-dim) tensor, ``>= 0``, zero when ``z_s == z_t``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement reverse_kl()")


def kd_gradient(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The gradient of the per-example forward KL with respect to the student's logits, in closed form.

    Row ``b`` of the result is ``d KL(p_t^T || p_s^T)_b / d z_s[b]``: how example ``b``'s own KL
    changes with each of its ``C`` student logits (no ``T^2`` factor and no averaging over the batch).
    Derive it on paper from ``p_s^T = softmax(z_s / T)`` (the chain rule through the log-softmax and
    the ``1/T`` inside it; the teacher's terms do not depend on ``z_s``), then compute your expression
    directly from the two tempered softmaxes. The grader checks values only and cannot tell how they
    were computed: ``torch.autograd`` here scores the points and teaches nothing.

    Check your derivation before you submit; the grader checks the same consequences:

    - it agrees with a finite difference (or ``torch.autograd``) of the per-example KL;
    - each row sums to 0 (why must it? think of adding one constant to every logit);
    - for zero-mean logits and a large ``T``, ``T^2`` times it tends to ``(z_s - z_t) / C``
      (Hinton et al. 2015, eq. 4): the soft gradients shrink like ``1/T^2``, which is why the loss
      multiplies the KL by ``T^2``.

    Args:
        student_logits: ``[B, C]``, ``z_s``.
        teacher_logits: ``[B, C]``, ``z_t``.
        temperature: ``T > 0``.

    Returns:
        Tensor ``[B, C]``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement kd_gradient()")


def logit_matching_limit(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """What the soft term ``T^2 * KL(p_t^T || p_s^T)`` of one example tends to as ``T -> infinity``, in closed form.

    Hinton et al. (2015, section 2.1) show that at high temperature distillation becomes matching the
    logits: derive the limit on paper from your ``kd_gradient`` (or from a first-order expansion of
    ``softmax(z / T)`` around the uniform distribution), then compute it directly from the logits.
    Hinton assumes zero-mean logits; your expression must hold for ANY logits (think again of adding
    one constant to every logit of a row: what does that change?).

    Consequences to check yours with (the grader checks them and the values):

    - it is ``>= 0``, and 0 when the two rows differ by a constant (``z_s = z_t + 3``);
    - it agrees with ``T^2 * KL(p_t^T || p_s^T)`` computed directly at ``T = 10,000`` (in float64);
    - it scales like the square of the logits: doubling both ``z_s`` and ``z_t`` multiplies it by 4.

    Args:
        student_logits: ``[B, C]``, ``z_s``.
        teacher_logits: ``[B, C]``, ``z_t``.

    Returns:
        Tensor ``[B]``: the limit for each example (no averaging over the batch).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement logit_matching_limit()")
