"""Exercises for notebook 06, part 2: speculative decoding.

Implement each function below with plain ``torch`` and Python. Do not use ``course_lib`` (its
``speculative`` module holds the reference answers the grader compares yours with): a file that
imports it scores zero. The grader runs this file in a separate process with a time limit, and a
function that modifies its input tensors in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex06_speculative")

or from the repository root with ``python -m course_lib.grading exercises --only ex06_speculative``
(``--only ex06`` grades this file and ``ex06_llm_distillation.py`` together).

Notation. One round of speculative decoding (Leviathan et al. 2023, arXiv:2211.17192; Chen et al.
2023, arXiv:2302.01318): a small *draft* model proposes ``K`` tokens ``x_0 .. x_{K-1}``, drawing
``x_i`` from its distribution ``q_i``; the *target* model reads the prefix and all ``K`` drafts in ONE
forward pass, which gives its distribution at every position: ``p_i`` (row ``i`` of ``p``) is the
target's distribution for the position of draft ``i`` (after the prefix and ``x_0 .. x_{i-1}``), and
``p_K``, the last row, the one for the position after the last draft. Rows ``[V]`` are
distributions over the same vocabulary of ``V`` tokens (non-negative, summing to 1): the two models
share a tokenizer. The drafts are accepted or rejected left to right; the round yields the accepted
drafts plus one token of the target's, so between 1 and ``K + 1`` tokens per target call.
"""
import torch


def accept_drafts(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                  uniforms: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Speculative sampling's verification step: how many drafts the target accepts, and the
    distribution the round's last token is drawn from.

    Contract (the rule of notebook 06's slide "One round"; its equations are yours to turn into code):

    - draft ``i``, the token ``x = drafts[i]``, is accepted with probability ``min(1, p[i, x] / q[i, x])``,
      decided by the given uniform ``u_i = uniforms[i]``: accepted iff ``u_i`` is below that
      probability. Two cases the ratio does not cover must still work: ``q[i, x] = 0`` (the draft "could
      not" have proposed it: accepted iff ``p[i, x] > 0``) and ``p[i, x] = 0`` (never accepted, whatever
      ``u_i``); no division may produce ``inf`` or ``NaN``;
    - the drafts are checked in order; at the FIRST rejected draft ``i`` the round stops (later drafts
      are thrown away, even those that would pass) and the function returns ``(i, r_i)``, where ``r_i``
      is the distribution that makes the round's token at position ``i`` follow ``p[i]`` exactly,
      whatever ``q[i]`` (the notebook states it; check on paper that it does). When ``r_i`` is
      undefined (its normalising sum is exactly 0, which happens when ``p[i] <= q[i]`` everywhere: for
      distributions, ``p[i] == q[i]`` up to rounding, where a rejection had probability ~0), return
      ``p[i]``; no tolerance is needed;
    - if all ``K`` drafts pass, return ``(K, p[K])``, the bonus distribution (the last row). With
      ``K = 0`` (``q`` is ``[0, V]``, ``drafts`` and ``uniforms`` are empty) that is ``(0, p[0])``.

    The function draws no random numbers (the uniforms are given) and returns the distribution to
    draw the next token from rather than a token, so that it can be checked exactly. The grader also
    simulates many one-draft rounds with your function and checks that the output token follows ``p``.

    Args:
        p: ``[K+1, V]``, the target's distributions: row ``i < K`` judges draft ``i``, row ``K`` is the
            bonus distribution.
        q: ``[K, V]``, the draft's distributions the drafts were drawn from (row ``i`` for draft ``i``), of
            ``p``'s floating dtype.
        drafts: ``[K]`` integer token ids (long), ``drafts[i]`` drawn from ``q[i]``.
        uniforms: ``[K]`` floats in ``[0, 1)``, one per draft.

    Returns:
        ``(n_accepted, distribution)``: a Python ``int`` in ``0..K``, the number of leading drafts
        accepted, and a ``[V]`` tensor of ``p``'s dtype, the distribution of the round's last token:
        ``r_n`` at the first rejection (``p[n]`` where ``r_n`` is undefined), ``p[K]`` when every draft
        passed. The inputs are left unchanged.

    Raises:
        ValueError: if ``p`` or ``q`` is not 2-D, ``p`` is not ``[K+1, V]`` for ``q`` ``[K, V]`` (one row
            more, the bonus distribution, and the same vocabulary), or ``drafts`` or ``uniforms`` is
            not ``[K]``.
    """
    ### BEGIN SOLUTION
    if p.dim() != 2 or q.dim() != 2:
        raise ValueError(f"expected p [K+1, V] and q [K, V], got shapes {tuple(p.shape)} and {tuple(q.shape)}")
    k, v = q.shape
    if p.shape != (k + 1, v):
        raise ValueError(f"p must be [K+1, V] = [{k + 1}, {v}] for q [{k}, {v}] (one row more, the bonus "
                         f"distribution, over the same vocabulary), got {tuple(p.shape)}")
    if drafts.shape != (k,) or uniforms.shape != (k,):
        raise ValueError(f"drafts and uniforms must be [K] = [{k}], got {tuple(drafts.shape)} and "
                         f"{tuple(uniforms.shape)}")
    for i in range(k):
        x = int(drafts[i])
        if uniforms[i] * q[i, x] < p[i, x]:                  # u < p/q, without dividing by q = 0
            continue
        residual = (p[i] - q[i]).clamp_min(0.0)
        total = residual.sum()
        if total <= 0:                                       # p <= q everywhere: p == q up to rounding
            return i, p[i].clone()
        return i, residual / total
    return k, p[k].clone()
    ### END SOLUTION


def expected_tokens_per_call(alpha: float, k: int) -> float:
    """The mean number of tokens one round (one target call) yields, with ``k`` drafts per round and a
    per-token acceptance probability ``alpha``, in closed form.

    Model (Leviathan et al. 2023, section 3.1): each draft is accepted with probability ``alpha``,
    independently, as long as the drafts before it were; the round stops at the first rejection and
    always ends with ONE token of the target's (the replacement of the rejected draft, or the bonus
    token when all ``k`` passed). Derive the mean from this model (how likely is it that at least
    ``j`` drafts pass?). What must hold: ``k + 1`` at ``alpha = 1`` (make sure your expression does
    not divide by zero there), 1 at ``alpha = 0``, and it grows with ``alpha`` and with ``k``.

    Args:
        alpha: the acceptance probability per draft token, in ``[0, 1]``.
        k: the number of drafts per round, an int ``>= 1``.

    Returns:
        A Python ``float``, between 1 and ``k + 1``.

    Raises:
        ValueError: if ``alpha`` is outside ``[0, 1]`` or ``k < 1``.
    """
    ### BEGIN SOLUTION
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha (the acceptance probability) must be in [0, 1], got {alpha}")
    if k < 1:
        raise ValueError(f"k (the drafts per round) must be >= 1, got {k}")
    if alpha == 1:
        return float(k + 1)
    return (1 - alpha ** (k + 1)) / (1 - alpha)
    ### END SOLUTION


def expected_speedup(alpha: float, k: int, cost_ratio: float, verify_cost: float = 1.0) -> float:
    """The expected speedup of speculative decoding over plain decoding with the target alone.

    Time is counted in target steps (one target forward over one token = 1). A round costs ``k``
    draft steps of ``c = cost_ratio`` each and one verify pass of the target over the ``k + 1`` new
    positions, ``v = verify_cost`` (notebook 06's ``v_{K+1}``: 1 in the papers' idealisation, more on a
    CPU), and yields ``expected_tokens_per_call(alpha, k)`` tokens on average, which plain decoding
    would take as many target steps to produce. Above 1: faster than the target alone; below 1:
    slower. You may call your ``expected_tokens_per_call``.

    Args:
        alpha: the acceptance probability per draft token, in ``[0, 1]``.
        k: the number of drafts per round, an int ``>= 1``.
        cost_ratio: ``c >= 0``, a draft step's time over a target step's (0: free drafts, e.g. prompt
            lookup).
        verify_cost: ``v > 0``, the verify pass's time over a target step's.

    Returns:
        A Python ``float``.

    Raises:
        ValueError: if ``alpha`` is outside ``[0, 1]``, ``k < 1``, ``cost_ratio < 0`` or ``verify_cost <= 0``.
    """
    ### BEGIN SOLUTION
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] (the acceptance probability per draft token), got {alpha}")
    if k < 1:
        raise ValueError(f"k must be >= 1 (the drafts per round), got {k}")
    if cost_ratio < 0:
        raise ValueError(f"cost_ratio (a draft step over a target step) must be >= 0, got {cost_ratio}")
    if verify_cost <= 0:
        raise ValueError(f"verify_cost (the verify pass over a target step) must be > 0, got {verify_cost}")
    tokens = float(k + 1) if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
    return tokens / (k * cost_ratio + verify_cost)
    ### END SOLUTION


def break_even_alpha(k: int, cost_ratio: float, verify_cost: float = 1.0) -> float | None:
    """The acceptance probability at which speculative decoding starts to pay: the ``alpha`` in ``[0, 1]``
    where ``expected_speedup(alpha, k, cost_ratio, verify_cost)`` equals 1.

    A new use of the model above (notebook 06 measures alpha, c and v on this CPU; this asks what
    alpha a draft would need). There is no closed form for ``k > 1``: solve it numerically (the
    speedup grows with ``alpha``, so a bisection to ``1e-6`` is enough). Cases to handle:

    - if the speedup is already ``>= 1`` at ``alpha = 0``, return ``0.0``;
    - if it stays below 1 even at ``alpha = 1`` (every draft accepted), no draft of this cost pays:
      return ``None``.

    You may call your ``expected_speedup``.

    Args:
        k: the number of drafts per round, an int ``>= 1``.
        cost_ratio: ``c >= 0``, a draft step's time over a target step's.
        verify_cost: ``v > 0``, the verify pass's time over a target step's.

    Returns:
        A Python ``float`` in ``[0, 1]`` (within ``1e-5``), or ``None``.
    """
    ### BEGIN SOLUTION
    # Instructor's note: the speedup is increasing in alpha, so speedup(alpha) = 1 has at most one root; the
    # two edge cases are the lesson (a draft too slow for ANY acceptance rate: k + 1 < k c + v). The reference
    # computes the speedup itself (rather than calling expected_speedup) so that its grading stands alone.
    def speedup(alpha: float) -> float:
        mean_tokens = k + 1.0 if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)
        return mean_tokens / (verify_cost + k * cost_ratio)

    if speedup(0.0) >= 1:
        return 0.0
    if speedup(1.0) < 1:
        return None
    low, high = 0.0, 1.0
    while high - low > 1e-9:
        middle = (low + high) / 2
        if speedup(middle) < 1:
            low = middle
        else:
            high = middle
    return (low + high) / 2
    ### END SOLUTION


def replacement_drawn_from_the_target() -> str:
    """A choice, with the reason worked out on paper: the source article replaces a rejected draft with
    a token drawn from the target's ``p_i`` instead of the residual. With one draft per round, what
    does the round's output token then follow?

    - ``"exact"``: still ``p_i`` exactly, only slower;
    - ``"over"``: tokens the draft proposes MORE often than the target (``q_i(x) > p_i(x)``) come out too often;
    - ``"under"``: tokens the draft proposes LESS often than the target (``q_i(x) < p_i(x)``) come out too often;
    - ``"draft"``: the draft's ``q_i``.

    Work it out: add up ``P(output = x)`` over the two ways ``x`` can come out (drafted and accepted;
    or a rejection, then drawn). Return the key (a ``str``).
    """
    ### BEGIN SOLUTION
    # Instructor's note: P(out = x) = min(p, q)(x) + (1 - alpha) p(x) with alpha = sum min(p, q). Where
    # q > p, min = p, so P = p + (1 - alpha) p > p: over-proposed tokens are over-produced (the residual
    # max(0, p - q) puts the missing mass only where q < p).
    return "over"
    ### END SOLUTION
