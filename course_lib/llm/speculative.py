"""Speculative decoding (notebook 06, part 2): a small draft model proposes, the target verifies.

Leviathan, Kalman and Matias 2023, "Fast Inference from Transformers via Speculative Decoding"
(arXiv:2211.17192); Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative
Sampling" (arXiv:2302.01318). Batch 1, as in those papers' measurements and in ``transformers``'
assisted generation.

**One round.** The draft proposes ``K`` tokens, one forward pass each (it is small, so that is
cheap). The target then scores the tokens it has not seen yet plus the ``K`` drafts in ONE forward
pass, which gives its distribution after every prefix: ``p_1 .. p_{K+1}``. The drafts are checked
left to right; the first rejected one is replaced by a token of the target's choosing and the rest
are thrown away; if all ``K`` pass, the target's ``K+1``-th distribution gives one more token for
free (the *bonus* token). So each target call yields between 1 and ``K + 1`` tokens.

**Parameters.** The generators take two objects besides the models and the prompt: a
:class:`DraftPolicy` (how many tokens the draft proposes per round: ``k``, the adaptive length,
the confidence stop) and a :class:`Sampling` (how the target's token is chosen: ``temperature``,
``top_k``, ``top_p`` and the ``generator`` every random number comes from; :data:`GREEDY`, the
default, is ``Sampling()``). Both are frozen dataclasses that validate themselves when built. E.g.
``speculative_generate(target, draft, prompt, 64, DraftPolicy(k=3), Sampling(temperature=0.7,
generator=g))``.

**Greedy mode** (``Sampling(temperature=0)``, :data:`GREEDY`): a draft token passes iff it is the
target's argmax; the replacement is the target's argmax. The output is exactly the target's own
greedy output.

**Sampling mode** (``temperature > 0``): ``p`` is the target's distribution (at ``temperature``,
after top-k / top-p filtering) and ``q`` the distribution the draft token was drawn from (by
default the draft's at the same temperature and filtering; see *Temperatures* below for a draft at
a temperature of its own). A draft token ``x ~ q`` is
accepted with probability ``min(1, p(x) / q(x))``; on rejection a token is drawn from the residual
``r = max(0, p - q) / sum(max(0, p - q))``. Then, for every token ``x``::

    P(out = x) = q(x) min(1, p(x)/q(x))  +  P(reject) r(x)
               = min(p(x), q(x))          +  (1 - sum_y min(p(y), q(y))) r(x)
               = min(p(x), q(x))          +  max(0, p(x) - q(x))                 = p(x)

since ``sum_y max(0, p(y) - q(y)) = 1 - sum_y min(p(y), q(y))``. The output follows the target's
distribution exactly, whatever the draft: a bad draft costs speed, never quality. The proof needs
``q`` to be the distribution the draft token was really drawn from; the expected acceptance per
token is ``alpha = sum_x min(p(x), q(x)) = 1 - TV(p, q)`` (:func:`expected_acceptance`). When
``p == q`` the residual is all zeros (and a rejection has probability 0, up to rounding); then
:func:`residual_distribution` falls back on ``p`` rather than asking ``torch.multinomial`` to
normalise zeros.

**KV caches.** Each model keeps a ``DynamicCache`` and is only ever fed the tokens it has not seen.
After a round both caches may hold rejected drafts; they are cropped back to the accepted prefix
(:func:`crop_cache`). What a rejection costs is then only the wasted compute, not a re-read of the
whole sequence. ``transformers`` changed ``crop``'s argument: in 4.x ``crop(n)`` kept the first
``n`` positions (a negative ``n`` removed ``-n``); in 5.x (5.24 here) a positive argument raises
and ``crop(-n)`` removes the last ``n``. ``crop(-n)`` means the same in both, so that is what
:func:`crop_cache` calls (``tests/llm/test_speculative.py`` pins it). The forward's cache argument is
``cache=`` in transformers 5.x (``past_key_values=`` still works there but warns, FutureWarning,
until its removal in 5.40); :func:`cache_keyword` reads the model's signature and uses whichever
name it has, so no warning is emitted in either version.

**Adaptive draft length.** With ``DraftPolicy(adaptive=True)`` the number of drafts changes between
rounds by the rule of ``transformers``' assisted generation (``num_assistant_tokens_schedule="heuristic"``,
``generation/candidate_generator.py``): +2 after a round where every draft was accepted, -1
otherwise, here kept within ``[1, max_k]`` (``max_k`` defaults to ``2 * k``; transformers has no
upper bound). Independently, ``DraftPolicy(confidence_threshold=...)`` stops drafting within a round as soon as the
draft's probability for the token it just proposed (its top probability, in greedy mode) falls
below the threshold (transformers' ``assistant_confidence_threshold``; fixed here, while
transformers re-tunes it from an ROC curve of past acceptances when scikit-learn is installed).
``transformers`` 5.24's defaults are 20 assistant tokens, the ``"constant"`` schedule and that
confidence stop at 0.4 (not re-tuned: this course does not install scikit-learn). Neither rule
changes the output distribution: which and how many tokens the draft proposes is decided before the
target looks at them, and every proposed token is judged by the rule above.

**Temperatures: what is exact and what is biased.** The proof needs one thing of ``q``: that it is
the distribution the draft token was really drawn from. The draft may sample at a temperature of
its own (the source article draws and judges its draft at temperature 1 and its target at 0.7):
``q`` is then the draft's distribution at that temperature, the output is still exactly the
target's, and only the acceptance ``sum min(p, q)`` changes (a draft that matches the target at the
target's temperature loses acceptance). :func:`speculative_sample` runs that scheme
(``draft_at``). What biases the output is judging a draft token with probabilities it was not drawn
from, e.g. drawn at 0.7 and judged with its probabilities at 1: :func:`speculative_sample`'s
``judge_draft_at``, kept so that the notebook and the tests can measure the bias. (It is the same
computation as :func:`speculative_generate`'s keyword-only ``draft_temperature``, which names the
temperature the draft is *judged* at, not the one it samples at; it is not part of :class:`Sampling`,
being a demonstration of a mistake, not a way to sample.) :func:`one_draft_outcome` gives the output
distribution and the acceptance of one draft token under either scheme exactly, by enumeration.

**The source article's faults**, and where this module differs:

- its residual ``max(0, p - q)`` is normalised only implicitly, by ``torch.multinomial`` (an
  all-zero residual, e.g. when ``p`` and ``q`` round to the same fp16 values, raises);
  :func:`residual_distribution` normalises explicitly and falls back on ``p``;
- neither model keeps a KV cache, so every step re-reads the whole sequence; the generators'
  keyword-only ``use_cache=False`` reproduces that loop (the same tokens, more time);
- batch size 1 only (so is this module: rows of a batch accept different numbers of drafts);
- its "expected 60-80%" acceptance is quoted, not measured; acceptance depends on the pair and the
  text, and :func:`greedy_agreement` measures it.

**Theory.** With a per-token acceptance ``alpha`` (independent tokens), a round yields
``(1 - alpha^(K+1)) / (1 - alpha)`` tokens on average (:func:`expected_tokens_per_call`; ``K+1`` at
``alpha = 1``). If a draft step costs ``c`` target steps and the verify pass, one forward over
``K+1`` tokens, costs ``v(K+1)`` target steps (``v(n)``: a function of the tokens in the pass; 1 in
the papers' idealisation, to be measured on real hardware), the speedup over plain decoding is
``expected_tokens_per_call / (K c + v(K+1))`` (:func:`expected_speedup`; Leviathan et al.,
Theorem 3.8, with ``v`` added).

:func:`greedy_generate` is the baseline: the target alone, KV-cached, greedy. Both generators
return the whole sequence (prompt + new tokens, ``[1, n]``, as ``model.generate`` does). Sampling
draws every random number from ``Sampling.generator`` on the CPU (probabilities are moved there), so a run
is reproducible from the generator's seed.

``import course_lib.llm.speculative`` does not import transformers; building a cache does.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real

import torch
from torch import nn

from .acceptance import _check_k, _filtered_probs, _greedy_accept, _speculative_accept
from .kv_cache import _CachedModel
from .teacher import output_vocab_size

__all__ = ["Sampling", "GREEDY", "DraftPolicy", "SpeculativeStats", "greedy_generate", "speculative_generate",
           "speculative_sample", "greedy_agreement", "simulate_greedy"]


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class Sampling:
    """How the target's tokens are chosen: ``temperature`` (0: greedy, the argmax), then ``top_k`` /
    ``top_p`` filtering (sampling only), every random number drawn from ``generator`` (``None``: torch's
    default generator). Validated when built; frozen. Two ``Sampling`` compare equal when their
    numbers are (the generator, a stateful object, is left out of the comparison)."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    generator: torch.Generator | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        temperature, top_k, top_p = self.temperature, self.top_k, self.top_p
        if isinstance(temperature, bool) or not isinstance(temperature, Real) or not math.isfinite(temperature) \
                or temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 1):
            raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
        if top_p is not None and (not isinstance(top_p, Real) or not 0.0 < top_p <= 1.0):
            raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
        if temperature == 0 and (top_k is not None or top_p is not None):
            raise ValueError("top_k / top_p filter a sampling distribution: they need temperature > 0 "
                             "(greedy decoding takes the argmax, which filtering does not change)")

    @property
    def greedy(self) -> bool:
        """``temperature == 0``: the argmax, no random numbers."""
        return self.temperature == 0


GREEDY = Sampling()
"""The default :class:`Sampling`: greedy decoding."""


@dataclass(frozen=True)
class DraftPolicy:
    """How many tokens the draft proposes per round. ``k``: the draft length (of the first round, when
    ``adaptive``). ``adaptive``: move it by transformers' heuristic (+2 after a round where every draft
    was accepted, -1 otherwise) within ``[1, max_k]``; ``max_k`` defaults to ``2 * k`` (resolved when
    built, so ``DraftPolicy(k=3) == DraftPolicy(k=3, max_k=6)``). ``confidence_threshold``: stop
    drafting within a round when the draft's probability for the token it just proposed falls below
    it. Validated when built; frozen."""

    k: int = 4
    adaptive: bool = False
    max_k: int | None = None
    confidence_threshold: float | None = None

    def __post_init__(self) -> None:
        _check_k(self.k)
        if self.max_k is None:
            object.__setattr__(self, "max_k", 2 * self.k)
        _check_k(self.max_k, "max_k")
        if self.max_k < self.k:
            raise ValueError(f"max_k ({self.max_k}) must be >= k ({self.k})")
        threshold = self.confidence_threshold
        if threshold is not None and (not isinstance(threshold, Real) or not 0.0 <= threshold <= 1.0):
            raise ValueError(f"confidence_threshold must be None or in [0, 1], got {threshold!r}")


def _check_parameters(policy, sampling) -> None:
    """A TypeError unless ``policy`` is a :class:`DraftPolicy` and ``sampling`` a :class:`Sampling`."""
    if not isinstance(policy, DraftPolicy):
        raise TypeError(f"policy must be a DraftPolicy (e.g. DraftPolicy(k=4)), got {type(policy).__name__}")
    if not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be a Sampling (e.g. Sampling(temperature=0.7) or GREEDY), "
                        f"got {type(sampling).__name__}")


# --------------------------------------------------------------------------- statistics

@dataclass
class SpeculativeStats:
    """What one :func:`speculative_generate` call did.

    ``target_calls`` / ``draft_calls``: forward passes of each model; ``drafted``: tokens the draft
    proposed; ``accepted``: drafted tokens the target accepted; ``generated``: new tokens returned;
    ``seconds``: wall-clock time of the call. ``draft_lengths`` and ``accepted_counts`` hold, per
    round (= per target call), how many tokens were drafted and how many of them accepted.
    Every round yields its accepted drafts plus one token of the target's, so
    ``generated == accepted + target_calls`` unless an end-of-sequence token cut a round short.
    """

    target_calls: int = 0
    draft_calls: int = 0
    drafted: int = 0
    accepted: int = 0
    generated: int = 0
    seconds: float = 0.0
    draft_lengths: list[int] = field(default_factory=list)
    accepted_counts: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Accepted / drafted tokens (``nan`` when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else math.nan

    @property
    def tokens_per_target_call(self) -> float:
        """New tokens per target forward pass: 1 for plain decoding, at most ``K + 1`` here."""
        return self.generated / self.target_calls if self.target_calls else math.nan

    @property
    def tokens_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else math.nan


# --------------------------------------------------------------------------- generation

def _prompt(input_ids: torch.Tensor) -> torch.Tensor:
    """``input_ids`` as ``[1, n]`` int64, or a ValueError (batch > 1, empty, not integer)."""
    if not isinstance(input_ids, torch.Tensor):
        raise ValueError(f"input_ids must be a tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"batch size 1 only: expected input_ids [n] or [1, n], got {tuple(input_ids.shape)}")
    if input_ids.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token (e.g. BOS)")
    return input_ids.long()


def _eos_set(eos_token_id) -> set[int]:
    if eos_token_id is None:
        return set()
    if isinstance(eos_token_id, Integral):
        return {int(eos_token_id)}
    if isinstance(eos_token_id, Sequence | torch.Tensor):
        return {int(t) for t in eos_token_id}
    raise ValueError(f"eos_token_id must be an int, a list of ints or None, got {eos_token_id!r}")


def _check_max_new_tokens(max_new_tokens) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, Integral) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def greedy_generate(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int,
                    eos_token_id: int | Sequence[int] | None = None) -> tuple[torch.Tensor, float]:
    """The baseline: ``model`` alone, KV-cached, greedy, one forward pass per token.
    Returns ``(tokens [1, n], seconds)``; stops after an ``eos_token_id``."""
    _check_max_new_tokens(max_new_tokens)
    tokens = _prompt(input_ids).to(_device(model))
    eos = _eos_set(eos_token_id)
    runner = _CachedModel(model, use_cache=True)
    start = time.perf_counter()
    for _ in range(max_new_tokens):
        token = runner.logits(tokens, 1)[0].argmax()
        tokens = torch.cat([tokens, token.view(1, 1)], dim=1)
        if int(token) in eos:
            break
    return tokens, time.perf_counter() - start


def _propose(draft: _CachedModel, tokens: torch.Tensor, n: int, sampling: Sampling, q_temperature: float,
             confidence_threshold: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Up to ``n`` draft tokens, drawn one forward pass at a time (greedy when ``sampling.greedy``),
    and, when sampling, the draft's distributions ``q`` ``[len, V]`` they are judged with (at
    ``q_temperature``; the same as ``sampling.temperature`` unless the biased rule is asked for)."""
    temperature, top_k, top_p, generator = sampling.temperature, sampling.top_k, sampling.top_p, sampling.generator
    drafts, qs = [], []
    sequence = tokens
    for _ in range(n):
        logits = draft.logits(sequence, 1)[0]
        if temperature == 0:
            token = logits.argmax()
            confidence = logits.softmax(-1)[token] if confidence_threshold is not None else None
        else:
            q = _filtered_probs(logits.cpu(), temperature, top_k, top_p)
            token = torch.multinomial(q, 1, generator=generator)[0]
            confidence = q[token]
            if q_temperature != temperature:           # the biased rule: judged by other probabilities
                q = _filtered_probs(logits.cpu(), q_temperature, top_k, top_p)
            qs.append(q)
            token = token.to(sequence.device)
        drafts.append(token)
        sequence = torch.cat([sequence, token.view(1, 1)], dim=1)
        if confidence_threshold is not None and confidence < confidence_threshold:
            break                                      # the draft is unsure: let the target decide
    drafted = torch.stack(drafts) if drafts else tokens.new_empty(0)
    return drafted, (torch.stack(qs) if qs else None)


@torch.no_grad()
def speculative_generate(target: nn.Module, draft: nn.Module, input_ids: torch.Tensor, max_new_tokens: int,
                         policy: DraftPolicy = DraftPolicy(), sampling: Sampling = GREEDY,
                         eos_token_id: int | Sequence[int] | None = None, *,
                         draft_temperature: float | None = None,
                         use_cache: bool = True) -> tuple[torch.Tensor, SpeculativeStats]:
    """Generate up to ``max_new_tokens`` tokens after ``input_ids`` (``[n]`` or ``[1, n]``) from
    ``target``, with ``draft`` proposing tokens by ``policy`` (a :class:`DraftPolicy`: ``k`` per
    round, or an adaptive length, and a confidence stop; see the module's docstring).

    ``sampling`` (a :class:`Sampling`): :data:`GREEDY` (the default), the target's own greedy output;
    ``temperature > 0``, samples from the target's distribution at that temperature after ``top_k`` /
    ``top_p`` filtering, exactly, every random number from its ``generator``. A round never drafts more
    than the tokens still wanted minus one, so no accepted token is thrown away at the end. Stops
    after an ``eos_token_id`` (an int or a list).

    Two keyword-only options for demonstration: ``draft_temperature`` (sampling only) is the
    temperature the draft's tokens are JUDGED at, although they were drawn at ``sampling.temperature``:
    judging a token with probabilities it was not drawn from biases the output (a draft that draws
    and is judged at its own temperature is exact: :func:`speculative_sample`); ``use_cache=False``
    runs both models over the whole sequence at every step, as the source article's loop does (same
    tokens, slower).

    Returns ``(tokens [1, n + new], SpeculativeStats)``."""
    tokens = _prompt(input_ids)
    _check_max_new_tokens(max_new_tokens)
    _check_parameters(policy, sampling)
    temperature, top_k, top_p, generator = sampling.temperature, sampling.top_k, sampling.top_p, sampling.generator
    if draft_temperature is not None:
        if sampling.greedy:
            raise ValueError("draft_temperature only applies when sampling (temperature > 0)")
        if isinstance(draft_temperature, bool) or not isinstance(draft_temperature, Real) \
                or not math.isfinite(draft_temperature) or draft_temperature <= 0:
            raise ValueError(f"draft_temperature must be > 0, got {draft_temperature!r}")
    target_vocab, draft_vocab = output_vocab_size(target), output_vocab_size(draft)
    if target_vocab != draft_vocab:
        raise ValueError(f"the draft's vocabulary ({draft_vocab} logits) differs from the target's "
                         f"({target_vocab}): the two distributions are compared token by token, so the "
                         f"models must share a tokenizer and an output size")
    eos = _eos_set(eos_token_id)
    q_temperature = temperature if draft_temperature is None else float(draft_temperature)

    tokens = tokens.to(_device(target))
    target_run, draft_run = _CachedModel(target, use_cache), _CachedModel(draft, use_cache)
    stats = SpeculativeStats()
    k_now = policy.k
    start = time.perf_counter()
    while stats.generated < max_new_tokens:
        # 1. the draft proposes (never more than the tokens still wanted, minus the target's own one)
        wanted = min(k_now, max_new_tokens - stats.generated - 1)
        drafts, q = _propose(draft_run, tokens, wanted, sampling, q_temperature, policy.confidence_threshold)
        # 2. the target scores its unseen tokens and all drafts in one forward pass: p_1 .. p_{K+1}
        target_logits = target_run.logits(torch.cat([tokens, drafts[None]], dim=1), len(drafts) + 1)
        # 3. accept a prefix of the drafts, then one token of the target's
        if temperature == 0:
            accepted, next_token = _greedy_accept(target_logits, drafts)
        else:
            p = _filtered_probs(target_logits.cpu(), temperature, top_k, top_p)
            accepted, next_token = _speculative_accept(p, q, drafts.cpu(), generator)
        new = torch.cat([drafts[:accepted], drafts.new_tensor([next_token])])
        stopped = False
        for i, token in enumerate(new.tolist()):
            if token in eos:                          # keep the EOS, drop what follows it
                new, accepted, stopped = new[:i + 1], min(accepted, i + 1), True
                break
        tokens = torch.cat([tokens, new[None]], dim=1)
        # 4. forget the rejected drafts: both caches keep the accepted prefix (the newest token,
        #    which neither model has seen, is fed at the next round)
        target_run.rewind(tokens.shape[1] - 1)
        draft_run.rewind(tokens.shape[1] - 1)
        stats.draft_lengths.append(len(drafts))
        stats.accepted_counts.append(accepted)
        stats.drafted += len(drafts)
        stats.accepted += accepted
        stats.generated += len(new)
        if stopped:
            break
        # 5. adaptive draft length (transformers' heuristic): +2 if every draft passed, else -1
        if policy.adaptive and len(drafts) > 0:
            k_now = min(k_now + 2, policy.max_k) if accepted == len(drafts) else max(1, k_now - 1)
    stats.seconds = time.perf_counter() - start
    stats.target_calls, stats.draft_calls = target_run.calls, draft_run.calls
    return tokens, stats


def speculative_sample(target: nn.Module, draft: nn.Module, input_ids: torch.Tensor, max_new_tokens: int,
                       policy: DraftPolicy = DraftPolicy(), sampling: Sampling = Sampling(temperature=1.0), *,
                       draft_at: float | None = None, judge_draft_at: float | None = None,
                       eos_token_id: int | Sequence[int] | None = None,
                       use_cache: bool = True) -> tuple[torch.Tensor, SpeculativeStats]:
    """Speculative sampling (``sampling.temperature > 0``) with the draft at a temperature of its own.

    ``sampling``: the target's (the output follows the target's distribution at its ``temperature``,
    after its ``top_k`` / ``top_p``; random numbers from its ``generator``). ``draft_at`` (default
    ``sampling.temperature``): the draft draws its tokens at this temperature AND is judged with its
    probabilities at it, as the source article does with 1 against the target's 0.7: exact, only the
    acceptance changes. ``judge_draft_at`` (default ``draft_at``): judge the draft's tokens with its
    probabilities at this temperature instead of the one they were drawn at: biased, kept to measure
    the bias. ``policy``, ``eos_token_id``, ``use_cache``: as in :func:`speculative_generate`.

    A temperature is a scale on the logits: ``softmax(z / t_d) = softmax((z * t / t_d) / t)``. So the
    draft's logits are multiplied by ``t / t_d`` (a forward hook on ``draft``, removed on return) and
    :func:`speculative_generate` runs at ``t = sampling.temperature``; its ``draft_temperature`` is set
    to the judging temperature on that scale, ``judge_draft_at * t / t_d``. ``draft`` must then not be
    ``target`` itself (pass a copy)."""
    _check_parameters(policy, sampling)
    temperature = sampling.temperature
    for name, value in (("temperature", temperature), ("draft_at", draft_at), ("judge_draft_at", judge_draft_at)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value)
                                  or value <= 0):
            raise ValueError(f"{name} must be > 0 (speculative_sample samples; greedy decoding is "
                             f"speculative_generate with sampling=GREEDY), got {value!r}")
    draft_at = temperature if draft_at is None else draft_at
    scale = temperature / draft_at
    judged = None if judge_draft_at is None or judge_draft_at == draft_at else judge_draft_at * scale
    if scale == 1:
        return speculative_generate(target, draft, input_ids, max_new_tokens, policy, sampling, eos_token_id,
                                    draft_temperature=judged, use_cache=use_cache)
    if draft is target:
        raise ValueError("draft_at rescales the draft's logits: pass a copy of the target as the draft, "
                         "not the target itself")

    def rescale(module, args, output):
        output.logits = output.logits * scale
        return output

    handle = draft.register_forward_hook(rescale)
    try:
        return speculative_generate(target, draft, input_ids, max_new_tokens, policy, sampling, eos_token_id,
                                    draft_temperature=judged, use_cache=use_cache)
    finally:
        handle.remove()


# --------------------------------------------------------------------------- greedy rounds, predicted

@torch.no_grad()
def greedy_agreement(draft: nn.Module, sequence: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Where the draft's greedy choice agrees with ``sequence`` after the prompt: ``[n]`` bools,
    ``n = len(sequence) - prompt_length``, entry ``j`` True iff the draft's argmax after
    ``sequence[:prompt_length + j]`` is ``sequence[prompt_length + j]``. One forward pass.

    With ``sequence`` the target's own greedy output, this decides every greedy speculative round:
    the drafts of a round continue an accepted prefix of that output, so a round starting at
    position ``i`` accepts exactly as many drafts as there are consecutive True entries from ``i``
    (at most ``K``). :func:`simulate_greedy` replays the rounds for any ``K``, and ``mean()`` of
    this vector is the per-token acceptance ``alpha`` the theory asks for."""
    tokens = _prompt(sequence)
    if not 1 <= prompt_length < tokens.shape[1]:
        raise ValueError(f"prompt_length must be in [1, {tokens.shape[1] - 1}] (sequence of {tokens.shape[1]} "
                         f"tokens), got {prompt_length!r}")
    tokens = tokens.to(_device(draft))
    logits = draft(input_ids=tokens[:, :-1], use_cache=False).logits[0, prompt_length - 1:]
    return (logits.argmax(-1) == tokens[0, prompt_length:]).cpu()


def simulate_greedy(agreement: torch.Tensor, policy: DraftPolicy) -> SpeculativeStats:
    """The statistics :func:`speculative_generate` (greedy, with ``policy``: a fixed ``k`` or the
    adaptive length, no confidence stop) would report for the continuation behind ``agreement``
    (:func:`greedy_agreement`), without running either model: ``target_calls``, ``draft_calls``,
    ``drafted``, ``accepted``, ``generated``, the per-round lists; ``seconds`` stays 0.

    It follows the generator's rules: a round drafts ``min(K, tokens still wanted - 1)`` tokens,
    accepts the run of agreements from its first position (at most the drafted count), then adds
    the target's token; the adaptive length moves +2 / -1 within ``[1, max_k]``. The
    continuation's last token is taken as the last wanted one (``max_new_tokens = len(agreement)``,
    or an end-of-sequence token there). A ``policy`` with a ``confidence_threshold`` raises: the
    confidence stop needs the draft's probabilities, which ``agreement`` does not hold."""
    if not isinstance(policy, DraftPolicy):
        raise TypeError(f"policy must be a DraftPolicy (e.g. DraftPolicy(k=4)), got {type(policy).__name__}")
    if policy.confidence_threshold is not None:
        raise ValueError("simulate_greedy cannot simulate a confidence_threshold: the stop depends on the "
                         "draft's probabilities, which the agreement vector does not hold (use a DraftPolicy "
                         "without one, or run speculative_generate)")
    k, adaptive, max_k = policy.k, policy.adaptive, policy.max_k
    agree = [bool(a) for a in torch.as_tensor(agreement).reshape(-1).tolist()]
    n, position, k_now = len(agree), 0, k
    stats = SpeculativeStats()
    while position < n:
        drafted = min(k_now, n - position - 1)
        accepted = 0
        while accepted < drafted and agree[position + accepted]:
            accepted += 1
        stats.target_calls += 1
        stats.draft_calls += drafted
        stats.drafted += drafted
        stats.accepted += accepted
        stats.draft_lengths.append(drafted)
        stats.accepted_counts.append(accepted)
        stats.generated += accepted + 1
        position += accepted + 1
        if adaptive and drafted > 0:
            k_now = min(k_now + 2, max_k) if accepted == drafted else max(1, k_now - 1)
    return stats


