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

The ladder (notebook 06's exercise cell gives points and times): ``causal_shift`` (warm-up),
``masked_token_kl``, ``truncated_teacher_divergence`` (a choice with a reason) and ``generalized_jsd``
(core); part 2's file holds the notebook's stretch. The grader names the common mistakes after a
wrong answer.
"""
import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)


def masked_token_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Hinton's distillation loss over the real tokens of a batch, as notebook 06's section "The loss over
    real tokens" defines it, with ``D`` the forward KL (the teacher's distribution first), at temperature
    ``T`` for both models and scaled by the factor that keeps its gradient's size independent of ``T``
    (notebook 02). ``mask`` says which positions are real; call it on logits already aligned
    (``causal_shift``'s job).

    Contract (the grader checks these and the values):

    - the logits at padding positions change nothing, whatever they are: neither the value nor the
      gradient (which is 0 at every padding position);
    - the same real tokens packed into one sequence without padding give the same value: the loss is a
      mean over the real tokens, so it does not depend on how the batch was padded;
    - without padding (a mask of ones) it is the mean over all ``B * S`` positions; a student equal to its
      teacher gives 0;
    - the teacher is a fixed target: no gradient reaches ``teacher_logits``.

    Args:
        student_logits: ``[B, S, V]``, the student's logits ``z_s``.
        teacher_logits: ``[B, S, V]``, the teacher's logits ``z_t`` on the same tokens.
        mask: ``[B, S]``, 1 (or ``True``) at a real token, 0 at padding (any dtype: long, bool or float).
        temperature: ``T > 0``, for both distributions (default 1).

    Returns:
        A 0-dim tensor, differentiable with respect to ``student_logits`` (the inputs are left unchanged).

    Raises:
        ValueError: if the two logits' shapes differ (a different vocabulary too), ``mask`` is not
            ``[B, S]`` (the logits' shape without the vocabulary), ``temperature <= 0``, or ``mask`` has
            no real token (the mean over 0 tokens is 0 / 0).
    """
    ### BEGIN SOLUTION
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    if student_logits.dim() != 3 or mask.shape != student_logits.shape[:2]:
        raise ValueError(f"expected logits [B, S, V] and a mask [B, S], got {tuple(student_logits.shape)} "
                         f"and {tuple(mask.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    real = mask.bool()
    if not real.any():
        raise ValueError("the mask has no real token: the mean over 0 tokens is undefined")
    log_ps = F.log_softmax(student_logits / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1)                     # [B, S]
    return temperature ** 2 * kl[real].mean()
    ### END SOLUTION


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5,
                    temperature: float = 1.0) -> torch.Tensor:
    """GKD's generalised Jensen-Shannon divergence (Agarwal et al. 2024, "On-Policy Distillation of Language
    Models", arXiv:2306.13649, eq. 1), per position, in TRL's convention (``GKDTrainer.generalized_jsd_loss``)
    as notebook 06's section "Forward KL, reverse KL, JSD" describes it: each model's KL to a mixture of
    the two distributions, ``beta`` weighing the TEACHER both in the mixture and in the weighted sum of
    the two KLs. The ends are DEFINED: ``beta = 0`` is the forward ``KL(p_t || p_s)`` and ``beta = 1`` the
    reverse ``KL(p_s || p_t)`` (the mixture formula itself gives 0 there, whatever the models: work out
    why, and what ``JSD_beta / beta`` tends to as ``beta -> 0``).

    Contract (the grader checks these and the values):

    - 0 wherever ``p_s == p_t``, for every ``beta``;
    - swapping the two models' logits turns ``JSD_beta`` into ``JSD_{1 - beta}``; at ``beta = 0.5`` swapping
      them changes nothing, and the value is at most ``log 2``, reached by two models that are confident
      on different tokens;
    - finite for confident models too: logits of 200 at one token and 0 elsewhere, whose other
      probabilities underflow to exactly 0 in float32, must not give NaN or inf;
    - one value per position: no ``T^2`` factor and no sum or mean over the positions (the loss applies
      both over the real tokens). Gradients flow to both arguments (a loss that trains only the student
      detaches the teacher before calling this).

    Args:
        student_logits: ``[B, S, V]``, the student's logits ``z_s``.
        teacher_logits: ``[B, S, V]``, the teacher's logits ``z_t``.
        beta: the teacher's weight, a number in ``[0, 1]`` (default 0.5).
        temperature: ``T > 0``, for both distributions (default 1).

    Returns:
        Tensor ``[B, S]`` (the logits' shape without the vocabulary): ``JSD_beta`` at each position
        (the inputs are left unchanged).

    Raises:
        ValueError: if ``beta`` is outside ``[0, 1]`` or ``temperature <= 0``.
    """
    ### BEGIN SOLUTION
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must lie in [0, 1] (0: forward KL, 1: reverse KL), got {beta}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_ps = F.log_softmax(student_logits / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        return (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1)              # KL(p_t || p_s)
    if beta == 1:
        return (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1)              # KL(p_s || p_t)
    weight = torch.tensor(beta, dtype=log_pt.dtype, device=log_pt.device)
    log_m = torch.logaddexp(log_pt + torch.log(weight), log_ps + torch.log1p(-weight))
    kl_teacher = (log_pt.exp() * (log_pt - log_m)).sum(dim=-1)              # KL(p_t || M)
    kl_student = (log_ps.exp() * (log_ps - log_m)).sum(dim=-1)              # KL(p_s || M)
    return beta * kl_teacher + (1 - beta) * kl_student
    ### END SOLUTION


def causal_shift(logits: torch.Tensor, labels: torch.Tensor,
                 attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align a causal LM's predictions with the tokens they predict, as notebook 06's section "The loss over
    real tokens" does before its loss: the logits at position ``i`` are the model's prediction of token
    ``i + 1`` (it has read tokens ``0..i``).

    Contract (the grader checks these and the values):

    - shifted position ``i`` pairs the logits that predict a token with that token's label; no logits
      predict the first token, and the last position's logits predict a token beyond the sequence;
    - shifted position ``i`` counts iff it is in the notebook's set ``R``: the token it reads and the token
      it predicts are both real. Elsewhere its label is ``-100``, the index ``F.cross_entropy`` (and
      Hugging Face) ignore, so the mask travels inside the labels. Check your rule on right padding
      (``[1, 1, 1, 0, 0]``), left padding (``[0, 0, 1, 1, 1]``) and a mask with padding at both ends;
    - without padding every shifted position counts.

    Args:
        logits: ``[B, S, V]``, a causal LM's logits on the tokens ``labels``.
        labels: ``[B, S]`` integer token ids (usually the input ids themselves).
        attention_mask: ``[B, S]``, 1 at a real token, 0 at padding (long or bool).

    Returns:
        ``(shifted_logits, shifted_labels)``: ``[B, S - 1, V]`` and ``[B, S - 1]`` (the labels' dtype,
        ``-100`` at the positions that do not count); the inputs, ``labels`` included, are left unchanged.
    """
    ### BEGIN SOLUTION
    real = attention_mask.bool()
    counts = real[:, :-1] & real[:, 1:]                                     # reads a real token, predicts one
    return logits[:, :-1], labels[:, 1:].masked_fill(~counts, -100)
    ### END SOLUTION


def truncated_teacher_divergence() -> str:
    """A choice with a reason (notebook 06's sections "Forward KL, reverse KL, JSD" and "Caching the teacher").

    Cache the teacher's top-``k`` log-probabilities only, and use them as they are: the teacher's
    distribution ``p_t`` is its top-``k`` probabilities, renormalised, and exactly 0 on every other token.
    The student is a softmax, so ``p_s > 0`` on every token of the vocabulary. For which divergence
    between the two is the token-level loss **infinite**, whatever the student?

    Returns:
        One of ``"forward_kl"`` (``KL(p_t || p_s)``), ``"reverse_kl"`` (``KL(p_s || p_t)``), ``"jsd"``
        (the generalised JSD at ``beta = 0.5``), or ``"none"`` (all three stay finite).
    """
    ### BEGIN SOLUTION
    # Instructor's note: KL(p_s || p_t) sums p_s(v) log(p_s(v) / p_t(v)); with p_t(v) = 0 and p_s(v) > 0 the
    # term is +inf. The forward KL weighs each term by p_t, so tokens outside the top-k contribute 0 (the
    # student's mass there is never penalised); the JSD compares each model with the mixture, which is positive
    # wherever either is, so it stays below log 2. The grader's hint for each wrong key says why it is finite.
    return "reverse_kl"
    ### END SOLUTION
