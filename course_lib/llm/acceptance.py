"""Speculative decoding's arithmetic, without models: the filtered distributions, the acceptance rule
and its residual, and the expected acceptance, tokens per call and speed-up (see
:mod:`course_lib.llm.speculative`).
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch

from ..validation import (
    check_logits,
    check_positive_int,
    check_probabilities,
    check_same_shape,
    check_temperature,
    check_weight,
)

__all__ = ["filtered_probs", "greedy_accept", "residual_distribution", "speculative_accept", "expected_acceptance",
           "one_draft_outcome", "expected_tokens_per_call", "expected_speedup", "required_acceptance"]


# --------------------------------------------------------------------------- distributions and the acceptance rule

def filtered_probs(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                   top_p: float | None = None) -> torch.Tensor:
    """``softmax(logits / temperature)`` over the last dimension, restricted to the ``top_k`` most
    likely tokens and then to the nucleus of mass ``top_p`` (the smallest set of most likely tokens
    whose probability reaches ``top_p``; the top token always stays), renormalised. The order
    (temperature, top-k, top-p) is ``transformers``'. It gives the target's ``p``, and the draft's
    ``q``: the same call that gives the distribution the draft's tokens are drawn from."""
    check_logits("logits", logits)
    check_temperature(temperature, allow_tensor=False)
    if top_k is not None:
        check_positive_int("top_k", top_k, meaning="None keeps every token")
    if top_p is not None:
        check_weight("top_p", top_p, high=1.0, low_open=True, allow_tensor=False, meaning="None keeps every token")
    return _filtered_probs(logits, temperature, top_k, top_p)


def _filtered_probs(logits: torch.Tensor, temperature: float, top_k: int | None = None,
                    top_p: float | None = None) -> torch.Tensor:
    """:func:`filtered_probs` without its checks (the generation loop checked its settings once)."""
    scaled = logits.float() / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        ordered, order = scaled.sort(dim=-1, descending=True)
        probs = ordered.softmax(-1)
        mass_before = probs.cumsum(-1) - probs          # mass of the more likely tokens
        drop = (mass_before >= top_p).scatter(-1, order, mass_before >= top_p)
        scaled = scaled.masked_fill(drop, -math.inf)
    return scaled.softmax(-1)


def greedy_accept(target_logits: torch.Tensor, drafts: torch.Tensor) -> tuple[int, int]:
    """Greedy verification: ``target_logits`` ``[K+1, V]`` (the target after each prefix),
    ``drafts`` ``[K]``. Returns ``(accepted, next_token)``: the number of leading drafts equal to
    the target's argmax, and the target's argmax after them (the correction, or the bonus token)."""
    check_logits("target_logits", target_logits, dims=2, layout="[K+1, V]")
    _check_drafts(drafts, len(target_logits) - 1, target_logits.shape[-1], "target_logits")
    return _greedy_accept(target_logits, drafts)


def _check_drafts(drafts: torch.Tensor, k: int, vocab: int, against: str) -> None:
    if not torch.is_tensor(drafts) or drafts.dim() != 1 or drafts.dtype.is_floating_point or drafts.dtype.is_complex \
            or drafts.dtype == torch.bool:
        got = f"{drafts.dtype} {tuple(drafts.shape)}" if torch.is_tensor(drafts) else type(drafts).__name__
        raise TypeError(f"drafts must be a 1-d tensor of integer token ids [K], got {got}")
    if len(drafts) != k:
        raise ValueError(f"drafts holds {len(drafts)} tokens but {against} has rows for {k} (it needs one more row "
                         f"than there are drafts: the distribution after each prefix, and after all of them)")
    if len(drafts) and (int(drafts.min()) < 0 or int(drafts.max()) >= vocab):
        raise ValueError(f"drafts must be token ids in [0, {vocab}), found {int(drafts.min())}..{int(drafts.max())}")


def _greedy_accept(target_logits: torch.Tensor, drafts: torch.Tensor) -> tuple[int, int]:
    choices = target_logits.argmax(-1).tolist()
    accepted = 0
    for draft, choice in zip(drafts.tolist(), choices):
        if draft != choice:
            break
        accepted += 1
    return accepted, choices[accepted]


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``max(0, p - q)``, normalised explicitly: where the target wants more than the draft gave.

    If it is all zeros (``p == q``: a rejection had probability 0 and happened through rounding),
    returns ``p`` instead of normalising zeros. ``p`` and ``q``: probabilities of one shape ``[V]``."""
    check_probabilities("p", p, dims=1, layout="[V]")
    check_probabilities("q", q, dims=1, layout="[V]")
    check_same_shape(("p", p), ("q", q), what="both are distributions over the same vocabulary")
    return _residual(p, q)


def _residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    residual = (p - q).clamp_min(0.0)
    total = residual.sum()
    if total <= 0:
        return p
    return residual / total


def speculative_accept(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                       generator: torch.Generator | None = None) -> tuple[int, int]:
    """Speculative sampling's verification: ``p`` ``[K+1, V]`` the target's distributions after each
    prefix, ``q`` ``[K, V]`` the draft's distributions the ``drafts`` ``[K]`` were drawn from.

    Draft ``i`` is accepted with probability ``min(1, p_i(x) / q_i(x))``; the first rejected one is
    replaced by a draw from :func:`residual_distribution` ``(p_i, q_i)``; if all pass, a bonus token
    is drawn from ``p_{K+1}``. Returns ``(accepted, next_token)``."""
    check_probabilities("p", p, dims=2, layout="[K+1, V]")
    check_probabilities("q", q, dims=2, layout="[K, V]")
    if q.shape != (len(p) - 1, p.shape[-1]):
        raise ValueError(f"q must be [K, V] = {(len(p) - 1, p.shape[-1])} for p {tuple(p.shape)} (one row fewer: "
                         f"no draft after the last prefix), got {tuple(q.shape)}")
    _check_drafts(drafts, len(q), q.shape[-1], "q")
    return _speculative_accept(p, q, drafts, generator)


def _speculative_accept(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                        generator: torch.Generator | None = None) -> tuple[int, int]:
    for i, x in enumerate(drafts.tolist()):
        u = torch.rand((), generator=generator).item()
        if u * q[i, x] < p[i, x]:                        # u < p/q, without dividing by q = 0
            continue
        residual = _residual(p[i], q[i])
        return i, int(torch.multinomial(residual, 1, generator=generator))
    return len(drafts), int(torch.multinomial(p[len(drafts)], 1, generator=generator))


def expected_acceptance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The probability that a draft token ``x ~ q`` is accepted: ``sum_x min(p(x), q(x))``,
    which is ``1 - TV(p, q)`` (over the last dimension)."""
    check_probabilities("p", p)
    check_probabilities("q", q)
    check_same_shape(("p", p), ("q", q), what="both are distributions over the same vocabulary")
    return torch.minimum(p, q).sum(-1)


def one_draft_outcome(p: torch.Tensor, drawn: torch.Tensor,
                      judged: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly what :func:`speculative_accept` does with one draft token ``x ~ drawn`` judged with
    the draft probabilities ``judged`` (default: ``drawn``, the correct rule) against the target's
    ``p``, all ``[V]``: returns ``(output distribution [V], acceptance probability)``, by enumeration.

    ``P(accept x) = min(1, p(x) / judged(x))`` (1 where ``judged(x) = 0 < p(x)``, as the rule's
    ``u * q < p`` gives), a rejection draws from ``residual_distribution(p, judged)``. With
    ``judged = drawn`` the output is ``p`` whatever ``drawn`` is (the module docstring's proof)
    and the acceptance is :func:`expected_acceptance`; with ``judged != drawn`` it is not ``p``."""
    judged = drawn if judged is None else judged
    if not p.shape == drawn.shape == judged.shape or p.dim() != 1:
        raise ValueError(f"p, drawn and judged must be [V] of one size, got {tuple(p.shape)}, "
                         f"{tuple(drawn.shape)}, {tuple(judged.shape)}")
    for name, dist in (("p", p), ("drawn", drawn), ("judged", judged)):
        check_probabilities(name, dist, dims=1, layout="[V]")
    ratio = torch.where(judged > 0, (p / judged.clamp_min(torch.finfo(judged.dtype).tiny)).clamp(max=1.0),
                        (p > 0).to(p.dtype))
    kept = drawn * ratio
    acceptance = kept.sum()
    return kept + (1 - acceptance) * _residual(p, judged), acceptance


# --------------------------------------------------------------------------- theory

def _check_k(k, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"{name} (tokens drafted per round) must be an int >= 1, got {k!r}")


def expected_tokens_per_call(alpha: float, k: int) -> float:
    """Mean tokens per target call with ``k`` drafts per round and per-token acceptance ``alpha``
    (drafts accepted independently): ``1 + alpha + ... + alpha^k = (1 - alpha^(k+1)) / (1 - alpha)``;
    ``k + 1`` at ``alpha = 1``, 1 at ``alpha = 0`` (Leviathan et al. 2023, eq. 1)."""
    _check_k(k)
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (acceptance probability) must be in [0, 1], got {alpha!r}")
    if alpha == 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def expected_speedup(alpha: float, k: int, cost_ratio: float, verify_cost: float = 1.0) -> float:
    """Expected speedup over plain decoding: ``expected_tokens_per_call(alpha, k) / (k c + v)``.

    ``cost_ratio`` ``c``: a draft step's time over a target step's; ``verify_cost`` ``v``: the target's
    forward over ``k + 1`` tokens over its single-token step (1 in the papers' idealisation)."""
    tokens = expected_tokens_per_call(alpha, k)
    check_weight("cost_ratio", cost_ratio, allow_tensor=False, meaning="a draft step's time over a target step's")
    check_weight("verify_cost", verify_cost, low_open=True, allow_tensor=False,
                 meaning="the verify pass's time over a target step's")
    return tokens / (k * cost_ratio + verify_cost)


def required_acceptance(speedup: float, k: int, cost_ratio: float, verify_cost: float = 1.0) -> float:
    """The per-token acceptance ``alpha`` at which :func:`expected_speedup` reaches ``speedup``
    (1.0: break-even), found by bisection (the speedup grows with ``alpha``); ``nan`` when even
    ``alpha = 1`` falls short (then only a cheaper draft or verify pass can get there)."""
    check_weight("speedup", speedup, low_open=True, allow_tensor=False, meaning="1.0 is break-even")
    if expected_speedup(1.0, k, cost_ratio, verify_cost) < speedup:
        return math.nan
    if expected_speedup(0.0, k, cost_ratio, verify_cost) >= speedup:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if expected_speedup(mid, k, cost_ratio, verify_cost) < speedup:
            low = mid
        else:
            high = mid
    return high
