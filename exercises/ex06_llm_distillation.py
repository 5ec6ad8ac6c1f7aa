# GENERATED from solutions/ex06_llm_distillation.py by `python -m course_lib.grading generate` - do not edit.
# (Course authors: edit solutions/ex06_llm_distillation.py and regenerate. Students: replace each
# `raise NotImplementedError` below with your code.)
"""Exercises for notebook 06: token-level distillation of a language model.

Implement each function below with plain ``torch`` (``torch.nn.functional`` is fine). Do not use
``course_lib`` (its ``llm_losses`` module holds the reference answers the grader compares yours
with): a file that imports it scores zero. The grader runs this file in a separate process with a
time limit, and a function that modifies its input tensors in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex06_llm")

or from the repository root with ``python -m course_lib.grading exercises --only ex06_llm``
(``--only ex06`` also grades ``ex06_speculative.py``, the exercises of part 2).

Notation. A batch of ``B`` sequences of ``S`` tokens over a vocabulary of ``V`` words: the logits
are ``[B, S, V]`` (``z_s`` the student's, ``z_t`` the teacher's, on the same tokens), a mask or
labels ``[B, S]``. ``attention_mask`` (and ``mask``) is 1 (or ``True``) at a real token and 0 at
padding, as a tokenizer returns it; padding may sit on the right (``[1, 1, 1, 0, 0]``) or on the
left (``[0, 0, 1, 1, 1]``). ``T > 0`` is the temperature and ``p_s = softmax(z_s / T)``,
``p_t = softmax(z_t / T)`` are the distributions over the vocabulary (the last dimension) at one
position. ``KL(p || q) = sum_v p(v) (log p(v) - log q(v))``.
"""
import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)


def masked_token_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Hinton's distillation loss over the real tokens of a batch of sequences.

        KL_{b,i} = sum_v p_t[b, i, v] * (log p_t[b, i, v] - log p_s[b, i, v])     (per position)
        loss     = T^2 * (1 / N) * sum_{b,i : mask[b, i] = 1} KL_{b,i},   N = number of real tokens

    The forward KL(p_t || p_s), the teacher's distribution first (mass-covering, as in Hinton et al.
    2015), at temperature ``T`` for both models, times ``T^2`` (which keeps the gradient's size
    independent of ``T``). The mean is over the ``N`` **real tokens only**: not over all ``B * S``
    positions. The article this course corrects flattens the logits to ``[B * S, V]`` and calls
    ``KLDivLoss(reduction="batchmean")``: that sums the KL over every position, padding included, and
    divides by ``B * S``, so the padded positions' logits (which predict nothing) pull on the
    student and the loss shrinks with the share of padding in the batch. Multiply by the mask (or
    index with it), then divide by ``N``, not by ``B * S`` and not by ``B``; and it is a mean, not a
    sum. If you use ``F.kl_div(input, target)``: it computes ``target * (log target - input)``, so
    ``input`` must be the student's *log*-probabilities (``F.log_softmax``) and ``target`` the
    teacher's probabilities (or log-probabilities with ``log_target=True``); use
    ``reduction="none"`` and sum over the vocabulary yourself.

    The teacher is a fixed target: detach it (``teacher_logits.detach()``), so that no gradient
    reaches the teacher's logits; the gradient with respect to the student's logits is the loss's.
    (``course_lib.llm.losses.token_kd_loss`` with ``attention_mask=mask`` and ``alpha=1`` computes the
    same, with labels and other divergences too.)

    Args:
        student_logits: ``[B, S, V]``, the student's logits ``z_s``.
        teacher_logits: ``[B, S, V]``, the teacher's logits ``z_t`` on the same tokens.
        mask: ``[B, S]``, 1 (or ``True``) at a real token, 0 at padding (any dtype: long, bool or float).
        temperature: ``T > 0``, for both distributions.

    Returns:
        A 0-dim tensor, differentiable with respect to ``student_logits`` (the inputs are left unchanged).

    Raises:
        ValueError: if the two logits' shapes differ, ``mask`` is not ``[B, S]`` (the logits' shape
            without the vocabulary), ``temperature <= 0``, or ``mask`` has no real token (the mean
            over 0 tokens is 0 / 0).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement masked_token_kl()")


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5,
                    temperature: float = 1.0) -> torch.Tensor:
    """The generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024), per position.

    TRL's convention (``GKDTrainer.generalized_jsd_loss`` in huggingface/trl; Agarwal et al. 2024,
    "On-Policy Distillation of Language Models", arXiv:2306.13649, eq. 1), for ``beta`` in ``[0, 1]``:

        M        = beta * p_t + (1 - beta) * p_s                 (the mixture: beta weighs the TEACHER)
        JSD_beta = beta * KL(p_t || M) + (1 - beta) * KL(p_s || M)     for 0 < beta < 1
        JSD_0    = KL(p_t || p_s)    (DEFINED: the forward KL, Hinton's)
        JSD_1    = KL(p_s || p_t)    (DEFINED: the reverse KL, mode-seeking, as in MiniLLM)

    At ``beta = 0`` the mixture is ``p_s`` and at ``beta = 1`` it is ``p_t``, so the formula gives 0
    at both ends, whatever the two distributions: TRL (and ``course_lib.llm.losses``) *define* the
    two ends as the forward and the reverse KL, the limits of ``JSD_beta / beta`` and
    ``JSD_beta / (1 - beta)``. Handle ``beta == 0`` and ``beta == 1`` before the mixture. At
    ``beta = 0.5`` it is the symmetric JSD: swapping the two arguments changes nothing, and it is at
    most ``log 2`` (reached when the two distributions do not overlap). It is 0 when
    ``p_s == p_t``, for every ``beta``.

    The mixture is a mixture of *probabilities*, an arithmetic mean, not a weighted mean of
    log-probabilities (that is a geometric mean, which is not even normalised). Compute its log in
    log space, ``log M = logaddexp(log p_t + log beta, log p_s + log(1 - beta))`` (``torch.logaddexp``,
    or ``torch.logsumexp`` over the two stacked terms): ``torch.log(beta * p_t + (1 - beta) * p_s)``
    is ``log 0 = -inf`` wherever both probabilities underflow, which happens for confident models, and
    the result is then NaN. Return one value per position: no ``T^2`` factor and no sum or mean over
    the positions (the loss applies both, over the real tokens). Gradients flow to both arguments
    (a loss that trains only the student detaches the teacher before calling this).
    (``course_lib.llm.losses.token_divergence(z_s, z_t, "jsd", beta=beta, temperature=T)`` computes the same.)

    Args:
        student_logits: ``[B, S, V]``, the student's logits ``z_s``.
        teacher_logits: ``[B, S, V]``, the teacher's logits ``z_t``.
        beta: the teacher's weight in the mixture, a number in ``[0, 1]``.
        temperature: ``T > 0``, for both distributions.

    Returns:
        Tensor ``[B, S]`` (the logits' shape without the vocabulary): ``JSD_beta`` at each position
        (the inputs are left unchanged).

    Raises:
        ValueError: if ``beta`` is outside ``[0, 1]`` or ``temperature <= 0``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement generalized_jsd()")


def causal_shift(logits: torch.Tensor, labels: torch.Tensor,
                 attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align a causal LM's predictions with the tokens they predict: ``(logits[:, :-1], shifted labels)``.

    A causal language model's logits at position ``i`` are its prediction of token ``i + 1`` (it has
    read tokens ``0..i``). To score them, pair position ``i``'s logits with label ``i + 1``: drop the
    *last* position's logits (it predicts a token beyond the sequence) and the *first* label (no
    position predicts it):

        shifted_logits = logits[:, :-1]          # [B, S - 1, V]
        shifted_labels = labels[:, 1:]           # [B, S - 1]

    A shifted position ``i`` counts iff **both** the token it reads (``attention_mask[:, i] == 1``)
    and the token it predicts (``attention_mask[:, i + 1] == 1``) are real. Elsewhere its label is
    ``-100``, the index ``F.cross_entropy`` (and Hugging Face) ignore, so the mask travels inside the
    labels. With right padding that is ``attention_mask[:, 1:]`` (the last real token's position,
    whose target is padding, drops out); with left padding it also drops the padding position just
    before the first real token, which reads padding and "predicts" the first real token. So it is
    neither ``attention_mask[:, :-1]`` nor ``attention_mask[:, 1:]`` alone, but their product.
    Set ``-100`` on a copy: ``labels[:, 1:]`` is a view of ``labels``, and writing into it changes
    the caller's labels (use ``masked_fill`` or ``torch.where``, which return new tensors).
    (``course_lib.llm.losses.shift_for_causal_lm(logits, labels, attention_mask)`` does the same;
    shift the teacher's logits alike: ``teacher_logits[:, :-1]``.)

    Args:
        logits: ``[B, S, V]``, a causal LM's logits on the tokens ``labels``.
        labels: ``[B, S]`` integer token ids (usually the input ids themselves).
        attention_mask: ``[B, S]``, 1 at a real token, 0 at padding.

    Returns:
        ``(shifted_logits, shifted_labels)``: ``[B, S - 1, V]`` and ``[B, S - 1]`` (the labels' dtype,
        ``-100`` at the positions that do not count); the inputs are left unchanged.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement causal_shift()")
