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

    Draft ``i``, the token ``x = drafts[i]`` (drawn from ``q[i]``), is accepted iff

        u_i < min(1, p[i, x] / q[i, x])          (u_i = uniforms[i], a uniform number in [0, 1))

    that is, with probability ``min(1, p_i(x) / q_i(x))``: always when the target gives ``x`` at least
    the draft's probability, less often the more the draft over-rated it. Test it as
    ``u_i * q[i, x] < p[i, x]``, without dividing: ``q[i, x]`` may be 0 (a token the draft "could not"
    propose is then accepted iff the target gives it a probability > 0), and a token the target gives
    probability 0 is never accepted, whatever ``u_i``. The drafts are checked in order, ``i = 0, 1, ...``:

    - at the FIRST rejected draft ``i`` the round stops (the later drafts are thrown away, even those
      that would pass) and the function returns ``(i, r_i)``, the residual distribution

          r_i = max(0, p[i] - q[i]) / sum_v max(0, p[i, v] - q[i, v])

      (element-wise ``max``, normalised to sum to 1). The replacement token is drawn from ``r_i``,
      NOT from ``p[i]``: the acceptance step already produced every token ``x`` with probability
      ``q_i(x) min(1, p_i(x) / q_i(x)) = min(p_i(x), q_i(x))``, and the residual adds exactly the
      missing mass, ``min(p, q) + (1 - alpha) r = min(p, q) + max(0, p - q) = p`` with
      ``alpha = sum_v min(p_i(v), q_i(v))`` the probability of accepting. So the output follows the
      target's distribution exactly, whatever the draft (a bad draft costs speed, never quality);
      drawing from ``p[i]`` instead gives too much weight to the tokens the draft already proposes
      too often. If the residual sums to 0 (``p[i] <= q[i]`` everywhere: for distributions, only
      ``p[i] == q[i]`` up to rounding, where a rejection had probability ~0), return ``p[i]`` instead
      of dividing by 0;
    - if all ``K`` drafts pass, return ``(K, p[K])``: the *bonus* token is drawn from the target's
      distribution after the last draft, the last row of ``p`` (not ``p[K - 1]``, which judged the
      last draft). With ``K = 0`` (nothing drafted) that is ``(0, p[0])``.

    The function draws no random numbers: the uniforms are given (a generator passes
    ``torch.rand(K)``), and it returns the distribution to draw the next token from rather than a
    token, so that it can be checked exactly. A round then outputs ``drafts[:n]`` followed by
    ``torch.multinomial(distribution, 1)``. The grader also simulates many one-draft rounds with
    your function and checks that the output token follows ``p``. (``course_lib.llm.acceptance``'s
    ``speculative_accept`` and ``residual_distribution`` do the same with a ``torch.Generator``.)

    Args:
        p: ``[K+1, V]``, the target's distributions: row ``i < K`` judges draft ``i``, row ``K`` is the
            bonus distribution.
        q: ``[K, V]``, the draft's distributions the drafts were drawn from (row ``i`` for draft ``i``).
        drafts: ``[K]`` integer token ids (long), ``drafts[i]`` drawn from ``q[i]``.
        uniforms: ``[K]`` floats in ``[0, 1)``, one per draft.

    Returns:
        ``(n_accepted, distribution)``: a Python ``int`` in ``0..K``, the number of leading drafts
        accepted, and a ``[V]`` tensor of ``p``'s dtype, the distribution of the round's last token:
        the normalised residual ``r_n`` at the first rejection (``p[n]`` if it sums to 0), ``p[K]`` when
        every draft passed. The inputs are left unchanged.

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
    per-token acceptance probability ``alpha``.

    Model (Leviathan et al. 2023, eq. 1): each draft is accepted with probability ``alpha``,
    independently, as long as the drafts before it were; the round stops at the first rejection and
    always ends with ONE token of the target's (the replacement of the rejected draft, or the bonus
    token when all ``k`` passed). So the round yields ``j + 1`` tokens when ``j`` drafts pass, at
    least ``j`` drafts pass with probability ``alpha^j``, and

        E[tokens] = 1 + alpha + alpha^2 + ... + alpha^k = (1 - alpha^(k+1)) / (1 - alpha)

    The closed form is 0 / 0 at ``alpha = 1``: there every draft passes and the round yields ``k + 1``
    tokens (handle ``alpha == 1`` before dividing). At ``alpha = 0`` it is 1 (only the target's
    token): plain decoding's one token per target call. It is not ``(1 - alpha^k) / (1 - alpha)``
    (that forgets the target's own token) nor ``1 + k * alpha`` (a rejection ends the round: the
    drafts after it do not count even if they would have passed).

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
    positions, ``v = verify_cost`` (1 in the papers' idealisation, where reading ``k + 1`` tokens
    costs the same as one; more on a CPU). It yields ``expected_tokens_per_call(alpha, k)`` tokens,
    which plain decoding would produce in as many target steps, so (Leviathan et al. 2023,
    Theorem 3.8, with ``v`` added)

        speedup = E[tokens] / (k * c + v),    E[tokens] = (1 - alpha^(k+1)) / (1 - alpha)   (k + 1 at alpha = 1)

    Above 1: faster than the target alone; below 1: slower (at ``alpha = 0`` it is ``1 / (k c + v)``).
    Both costs count: the drafts run one after another (``k`` of them, not one) and the verify pass
    is not free. (You may call your ``expected_tokens_per_call``.)

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
