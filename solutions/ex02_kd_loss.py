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

    forward  KL(p_t || p_s) = sum_k p_t[k] * (log p_t[k] - log p_s[k])    (Hinton's loss; mass-covering)
    reverse  KL(p_s || p_t) = sum_k p_s[k] * (log p_s[k] - log p_t[k])    (mode-seeking)

A common mistake: ``nn.KLDivLoss()(F.log_softmax(z_s / T), F.softmax(z_t / T))`` computes the
*forward* one, KL(teacher || student), even though many write-ups call it KL(student || teacher);
and its default ``reduction="mean"`` divides by ``B * C`` instead of ``B`` (use ``"batchmean"``).
"""
import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """Hinton's knowledge-distillation loss (Hinton, Vinyals & Dean 2015, arXiv:1503.02531).

        L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, softmax(z_s))

    averaged over the batch: ``L = (1/B) * sum_b L_b``. The KL is the *forward* one (teacher first),
    computed at temperature ``T``; the cross-entropy ``CE(y, softmax(z_s)) = -log softmax(z_s)[y]``
    uses the hard labels at temperature 1. The ``T^2`` factor keeps the soft term's contribution
    to the gradient roughly unchanged as ``T`` changes (the soft gradients shrink like ``1/T^2``;
    Hinton et al. 2015, section 2).

    Args:
        student_logits: ``[B, C]``, the student's logits ``z_s`` (gradients flow through them).
        teacher_logits: ``[B, C]``, the teacher's logits ``z_t``.
        targets: ``[B]`` integer class indices ``y``.
        temperature: ``T > 0``.
        alpha: weight in ``[0, 1]`` of the soft (distillation) term; ``alpha = 0`` is plain
            cross-entropy training, ``alpha = 1`` pure distillation.

    Returns:
        A scalar (0-dim) tensor, differentiable with respect to ``student_logits``.
    """
    ### BEGIN SOLUTION
    log_ps = F.log_softmax(student_logits / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).mean()
    ce = F.cross_entropy(student_logits, targets)
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce
    ### END SOLUTION


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The reverse (mode-seeking) KL between tempered distributions, averaged over the batch.

        R = (1/B) * sum_b KL(p_s^T || p_t^T)_b,   KL(p_s || p_t) = sum_k p_s[k] * (log p_s[k] - log p_t[k])

    No ``T^2`` factor and no cross-entropy term: just the divergence. It differs from the forward
    KL whenever the two distributions differ: e.g. ``p_s = [0.9, 0.1]``, ``p_t = [0.5, 0.5]`` gives
    ``KL(p_s || p_t) = 0.368`` but ``KL(p_t || p_s) = 0.511``.

    Args:
        student_logits: ``[B, C]``, ``z_s``.
        teacher_logits: ``[B, C]``, ``z_t``.
        temperature: ``T > 0``.

    Returns:
        A scalar (0-dim) tensor, ``>= 0``, zero when ``z_s == z_t``.
    """
    ### BEGIN SOLUTION
    log_ps = F.log_softmax(student_logits / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)
    return (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1).mean()
    ### END SOLUTION


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
    ### BEGIN SOLUTION
    p_s = torch.softmax(student_logits / temperature, dim=-1)
    p_t = torch.softmax(teacher_logits / temperature, dim=-1)
    return (p_s - p_t) / temperature
    ### END SOLUTION
