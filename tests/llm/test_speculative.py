"""Speculative decoding (course_lib.llm.speculative) on tiny random Llama models: greedy output equals
the target's own greedy output and transformers' assisted generation; sampling reproduces the
target's exact distribution of the first tokens, also with the draft at a temperature of its own
(the source article's scheme), while judging a draft with probabilities it was not drawn from does not;
the KV caches after a rejection and crop equal a fresh forward; statistics, theory, errors; the
parameter objects (Sampling, DraftPolicy)."""
import copy
import dataclasses
import importlib.metadata
import math
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from course_lib.llm import acceptance, kv_cache, speculative as spec  # noqa: E402
from course_lib.llm.speculative import GREEDY, DraftPolicy, Sampling  # noqa: E402
from course_lib.llm.tiny import tiny_llama  # noqa: E402

V = 32
PROMPTS = ([3, 7, 9, 4], [5, 1, 30, 12, 8], [17], [9, 9, 21, 6, 0, 11, 2, 27])


def llama(seed, scale, layers=1, hidden=16, vocab=V):
    """A tiny random Llama whose output matrix is scaled up so that its distributions are peaked
    (the default initialisation gives near-uniform ones, and near-ties for the argmax)."""
    model = tiny_llama(layers, seed=seed, vocab_size=vocab, hidden_size=hidden).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


def perturbed(model, noise, seed):
    """A copy of ``model`` with Gaussian noise (``noise`` times each tensor's std): a draft that
    agrees with it often, not always."""
    draft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(noise * p.std() * torch.randn(p.shape, generator=g))
    return draft


@pytest.fixture(scope="module")
def greedy_models():
    target = llama(0, 20.0, layers=2, hidden=32)
    return target, {"self": target, "close": perturbed(target, 0.1, 1), "random": llama(7, 20.0, layers=2, hidden=32)}


@pytest.fixture(scope="module")
def sampling_models():
    target = llama(0, 20.0)
    return target, {"random": llama(1, 20.0), "close": perturbed(target, 0.3, 5), "self": copy.deepcopy(target)}


def ids(prompt):
    return torch.tensor([prompt])


# --------------------------------------------------------------------------- greedy: exactly the target's output

@pytest.mark.parametrize("draft_name", ["self", "close", "random"])
def test_greedy_equals_target_greedy(greedy_models, draft_name):
    target, drafts = greedy_models
    draft = drafts[draft_name]
    rates = []
    for prompt in PROMPTS:
        expected, _ = spec.greedy_generate(target, ids(prompt), 20)
        plain = target.generate(ids(prompt), max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert torch.equal(expected, plain)                      # the baseline is the target's greedy
        for k in (1, 2, 4, 6):
            out, stats = spec.speculative_generate(target, draft, ids(prompt), 20, DraftPolicy(k=k))
            assert torch.equal(out, expected), (prompt, k)
            assert stats.generated == 20
            rates.append(stats.acceptance_rate)
    mean = sum(rates) / len(rates)
    # the drafts really differ: one that agrees (almost) always, one often, one rarely
    assert {"self": mean == 1.0, "close": 0.6 < mean < 1.0, "random": mean < 0.3}[draft_name], mean


def test_greedy_variants_give_the_same_tokens(greedy_models):
    """Without a cache (the source article's loop), adaptively, with the confidence stop, with an EOS."""
    target, drafts = greedy_models
    for prompt in PROMPTS[:2]:
        expected, _ = spec.greedy_generate(target, ids(prompt), 16)
        for policy, kw in ((DraftPolicy(k=3), {"use_cache": False}), (DraftPolicy(k=3, adaptive=True), {}),
                           (DraftPolicy(k=3, adaptive=True, confidence_threshold=0.9), {})):
            out, _ = spec.speculative_generate(target, drafts["close"], ids(prompt), 16, policy, **kw)
            assert torch.equal(out, expected), (policy, kw)
        eos = int(expected[0, len(prompt) + 5])                  # stop at the 6th new token's value
        cut, _ = spec.greedy_generate(target, ids(prompt), 16, eos_token_id=eos)
        out, stats = spec.speculative_generate(target, drafts["close"], ids(prompt), 16, DraftPolicy(k=4),
                                               eos_token_id=[eos])
        assert torch.equal(out, cut) and int(out[0, -1]) == eos and out.shape[1] <= len(prompt) + 6


def test_greedy_equals_assisted_generation(greedy_models):
    target, drafts = greedy_models
    eos = target.generation_config.eos_token_id
    for name in ("close", "random"):
        for prompt in PROMPTS[:3]:
            # the pinned transformers supports assisted generation: an error here is a failure, not a skip
            assisted = target.generate(ids(prompt), assistant_model=drafts[name], do_sample=False,
                                       max_new_tokens=20, pad_token_id=0)
            out, _ = spec.speculative_generate(target, drafts[name], ids(prompt), 20, DraftPolicy(k=4), GREEDY, eos)
            assert torch.equal(out, assisted), (name, prompt)


# --------------------------------------------------------------------------- sampling: exactly the target's distribution

def exact_pair_distribution(target, prompt, temperature, top_k=None, top_p=None):
    """p(x1 | prompt) [V] and p(x1) p(x2 | prompt, x1) [V, V], exactly, from two forward passes."""
    with torch.no_grad():
        first = acceptance.filtered_probs(target(ids(prompt)).logits[0, -1], temperature, top_k, top_p)
        both = torch.cat([ids(prompt).expand(V, -1), torch.arange(V)[:, None]], dim=1)
        second = acceptance.filtered_probs(target(both).logits[:, -1], temperature, top_k, top_p)
    return first, first[:, None] * second


def tv_bound(probs, n, seed=0, replicates=1000):
    """The largest total-variation distance between ``probs`` and the frequencies of ``n`` exact
    draws from it, over ``replicates`` simulations (about its 99.9th percentile): what sampling
    noise alone gives."""
    g = torch.Generator().manual_seed(seed)
    flat = probs.flatten()
    draws = torch.multinomial(flat, n * replicates, replacement=True, generator=g).view(replicates, n)
    counts = torch.zeros(replicates, flat.numel()).scatter_add_(1, draws, torch.ones(replicates, n))
    return float((counts / n - flat).abs().sum(1).max() / 2)


def tv(counts, probs):
    return float((counts / counts.sum() - probs).abs().sum() / 2)


def sample_first_tokens(target, draft, prompt, runs, max_new_tokens, seed, policy, temperature, top_k=None,
                        top_p=None, sampler=spec.speculative_generate, **kw):
    g = torch.Generator().manual_seed(seed)
    sampling = Sampling(temperature, top_k, top_p, generator=g)
    first, pairs = torch.zeros(V), torch.zeros(V, V)
    drafted = accepted = 0
    for _ in range(runs):
        out, stats = sampler(target, draft, ids(prompt), max_new_tokens, policy, sampling, **kw)
        x1, x2 = out[0, len(prompt):len(prompt) + 2].tolist()
        first[x1] += 1
        pairs[x1, x2] += 1
        drafted, accepted = drafted + stats.drafted, accepted + stats.accepted
    return first, pairs, accepted / drafted


@pytest.mark.parametrize("case", [
    # a draft that disagrees strongly (an independent model): nearly every token comes from the residual
    # (2 tokens wanted: one draft per round, then the residual or the bonus token)
    dict(draft="random", prompt=PROMPTS[0], runs=1500, policy=DraftPolicy(k=2), new=2, kw={}),
    # a draft that agrees about half the time, top-k and top-p on both, adaptive length, confidence stop
    # (3 tokens wanted: 2 drafts in the first round)
    dict(draft="close", prompt=PROMPTS[1], runs=1200, policy=DraftPolicy(k=2, adaptive=True, confidence_threshold=0.3),
         new=3, kw=dict(top_k=12, top_p=0.95)),
])
def test_sampling_matches_target_distribution(sampling_models, case):
    target, drafts = sampling_models
    temperature = 0.7
    kw = case["kw"]
    p1, p12 = exact_pair_distribution(target, case["prompt"], temperature, kw.get("top_k"), kw.get("top_p"))
    first, pairs, rate = sample_first_tokens(target, drafts[case["draft"]], case["prompt"], case["runs"], case["new"],
                                             seed=1, policy=case["policy"], temperature=temperature, **kw)
    # the drafts are as (dis)agreeing as intended, so acceptance, residual and bonus all occur
    assert (rate < 0.25) if case["draft"] == "random" else (0.3 < rate < 0.75), rate
    assert tv(first, p1) < tv_bound(p1, case["runs"])
    assert tv(pairs.flatten(), p12.flatten()) < tv_bound(p12, case["runs"])
    if kw:                                                       # filtered tokens never appear
        assert pairs[p12 == 0].sum() == 0


def test_draft_at_its_own_temperature_is_exact(sampling_models):
    """The source article's scheme: the draft draws AND is judged at temperature 1, the target at 0.7.
    The output is still exactly the target's; only the acceptance changes. The draft is a copy of the
    target: at the target's temperature it is always accepted, at its own it is not."""
    target, drafts = sampling_models
    draft, prompt, runs, temperature = drafts["self"], PROMPTS[1], 1500, 0.7
    p1, p12 = exact_pair_distribution(target, prompt, temperature)
    first, pairs, rate = sample_first_tokens(target, draft, prompt, runs, 2, seed=3, policy=DraftPolicy(k=1),
                                             temperature=temperature, draft_at=1.0, sampler=spec.speculative_sample)
    assert not draft._forward_hooks                              # the rescaling hook is gone
    assert tv(first, p1) < tv_bound(p1, runs)
    assert tv(pairs.flatten(), p12.flatten()) < tv_bound(p12, runs)
    _, _, same = sample_first_tokens(target, draft, prompt, 200, 2, seed=3, policy=DraftPolicy(k=1),
                                     temperature=temperature)
    with torch.no_grad():
        q1 = acceptance.filtered_probs(draft(ids(prompt)).logits[0, -1], 1.0)
    expected = float(acceptance.expected_acceptance(p1, q1))               # the first draft's, exactly
    assert same == 1.0 and expected < 0.95, (same, expected)
    assert abs(rate - expected) < 0.1 and rate < 0.95, (rate, expected)
    with pytest.raises(ValueError, match="copy"):
        spec.speculative_sample(target, target, ids(prompt), 2, DraftPolicy(k=4), Sampling(temperature=0.7),
                                draft_at=1.0)


def test_judging_with_other_probabilities_is_biased(sampling_models):
    """The mistake that does bias the output: tokens drawn at 0.7, judged with the draft's probabilities
    at 1 (``speculative_sample(judge_draft_at=1.0)``, the same as ``speculative_generate``'s
    ``draft_temperature=1.0``)."""
    target, drafts = sampling_models
    draft, prompt, runs, temperature = drafts["self"], PROMPTS[1], 1500, 0.7
    p, _ = exact_pair_distribution(target, prompt, temperature)
    with torch.no_grad():
        logits = draft(ids(prompt)).logits[0, -1]
    drawn, judged = acceptance.filtered_probs(logits, temperature), acceptance.filtered_probs(logits, 1.0)
    # what the biased sampler outputs, exactly: accepted draws plus rejections resampled from the residual
    biased, _ = acceptance.one_draft_outcome(p, drawn, judged)
    bound = tv_bound(p, runs)
    assert tv(biased, p) > 2 * bound                             # the bias is well above the noise
    first, _, _ = sample_first_tokens(target, draft, prompt, runs, 2, seed=2, policy=DraftPolicy(k=1),
                                      temperature=temperature, judge_draft_at=1.0, sampler=spec.speculative_sample)
    assert tv(first, p) > bound                                  # ... and this test sees it
    assert tv(first, biased) < tv_bound(biased, runs)            # it is exactly the predicted bias
    same, _, _ = sample_first_tokens(target, draft, prompt, runs, 2, seed=2, policy=DraftPolicy(k=1),
                                     temperature=temperature, draft_temperature=1.0)
    assert torch.equal(same, first)                              # speculative_generate's name for it
    honest, _, _ = sample_first_tokens(target, draft, prompt, runs, 2, seed=2, policy=DraftPolicy(k=1),
                                       temperature=temperature)
    assert tv(honest, p) < bound                                 # the same run without the mistake passes


def test_one_draft_outcome():
    """Enumeration: exact whenever a draft is judged with the distribution it was drawn from (any
    temperatures), biased otherwise; the acceptance is sum min(p, q) in the exact case."""
    z_target, z_draft = torch.tensor([2.0, 1.2, 0.9, 0.5, 0.0, -3.0]), torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.2, 1.5])
    p = acceptance.filtered_probs(z_target, 0.7)
    for t in (0.7, 1.0, 2.5):
        q = acceptance.filtered_probs(z_draft, t)
        out, accepted = acceptance.one_draft_outcome(p, q)
        assert torch.allclose(out, p, atol=1e-6), t
        assert math.isclose(float(accepted), float(acceptance.expected_acceptance(p, q)), abs_tol=1e-6)
    out, _ = acceptance.one_draft_outcome(p, acceptance.filtered_probs(z_draft, 0.7),
                                          acceptance.filtered_probs(z_draft, 1.0))
    assert tv(out, p) > 0.02
    # q = 0 where p > 0 (a filtered draft): never drawn there, and the residual supplies that mass
    q = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    out, accepted = acceptance.one_draft_outcome(p, q)
    assert torch.allclose(out, p, atol=1e-6) and math.isclose(float(accepted), float(p[1] + p[2]), abs_tol=1e-6)
    with pytest.raises(ValueError, match="one size"):
        acceptance.one_draft_outcome(p, q[:4])


def test_speculative_accept_preserves_p():
    """The acceptance step alone, on fixed distributions (one draft), incl. q = 0 where p > 0."""
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.1, 0.0, 0.3, 0.6]])
    g, n = torch.Generator().manual_seed(0), 5000
    counts = torch.zeros(4)
    for _ in range(n):
        x = torch.multinomial(q[0], 1, generator=g)
        accepted, token = acceptance.speculative_accept(p, q, x, g)
        counts[x if accepted else token] += 1
    assert tv(counts, p[0]) < tv_bound(p[0], n)
    assert math.isclose(float(acceptance.expected_acceptance(p[0], q[0])), 0.1 + 0.0 + 0.2 + 0.0, abs_tol=1e-6)


def test_residual_distribution():
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.5, 0.3])
    assert torch.allclose(acceptance.residual_distribution(p, q), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(acceptance.residual_distribution(p, p.clone()), p)        # all zeros: falls back on p
    p, q = torch.tensor([0.4, 0.4, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    assert torch.allclose(acceptance.residual_distribution(p, q), torch.tensor([2 / 3, 1 / 3, 0.0]))


def test_filtered_probs():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert torch.allclose(acceptance.filtered_probs(logits, 1.0), torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.allclose(acceptance.filtered_probs(logits, 1.0, top_k=2), torch.tensor([0.625, 0.375, 0, 0]))
    assert torch.allclose(acceptance.filtered_probs(logits, 1.0, top_p=0.75), torch.tensor([0.625, 0.375, 0, 0]))
    assert torch.allclose(acceptance.filtered_probs(logits, 1.0, top_p=0.85), torch.tensor([0.5, 0.3, 0.15, 0]) / 0.95)
    assert torch.allclose(acceptance.filtered_probs(logits, 1.0, top_p=0.1), torch.tensor([1.0, 0, 0, 0]))
    hot = acceptance.filtered_probs(logits, 0.5)
    assert torch.allclose(hot, torch.tensor([0.25, 0.09, 0.0225, 0.0025]) / 0.365)
    # the same as transformers' warpers (temperature, then top-k, then top-p)
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    z = torch.randn(3, V, generator=torch.Generator().manual_seed(0)) * 3
    warped = TopPLogitsWarper(0.8)(None, TopKLogitsWarper(10)(None, TemperatureLogitsWarper(0.7)(None, z)))
    assert torch.allclose(acceptance.filtered_probs(z, 0.7, top_k=10, top_p=0.8), warped.softmax(-1), atol=1e-6)


# --------------------------------------------------------------------------- KV caches

def test_crop_convention_of_installed_transformers():
    """``crop(-n)`` removes the last n positions in every version; a positive argument kept the first
    n in transformers 4.x and raises in 5.x. Pinned, so an upgrade that changes it is noticed."""
    model = llama(0, 1.0)
    cache = kv_cache.new_cache(model)
    with torch.no_grad():
        model(input_ids=ids([1, 2, 3, 4, 5, 6]), use_cache=True, **{kv_cache.cache_keyword(model): cache})
    assert cache.get_seq_length() == 6
    cache.crop(-2)
    assert cache.get_seq_length() == 4
    major = int(importlib.metadata.version("transformers").split(".")[0])
    if major >= 5:
        with pytest.raises(ValueError, match="positive"):
            cache.crop(3)
    else:
        cache.crop(3)
        assert cache.get_seq_length() == 3
    kv_cache.crop_cache(cache, 10)                                   # keeping more than it holds: no-op
    kv_cache.crop_cache(cache, 2)
    assert cache.get_seq_length() == 2
    with pytest.raises(ValueError):
        kv_cache.crop_cache(cache, -1)


def test_cache_after_rejection_and_crop_equals_fresh_forward():
    target = llama(0, 20.0, layers=2, hidden=32)
    prompt, drafts, accepted, correction = [3, 7, 9, 4, 12], [5, 6, 8, 10], 1, 22
    cache, keyword = kv_cache.new_cache(target), kv_cache.cache_keyword(target)
    with torch.no_grad():
        target(input_ids=ids(prompt[:3]), use_cache=True, **{keyword: cache})                  # earlier rounds
        target(input_ids=ids(prompt[3:] + drafts), use_cache=True, **{keyword: cache})         # verify K = 4
        kv_cache.crop_cache(cache, len(prompt) + accepted)                                         # drafts 2..4 rejected
        assert cache.get_seq_length() == len(prompt) + accepted
        cached = target(input_ids=ids([correction, 13]), use_cache=True, **{keyword: cache}).logits[0]
        fresh = target(input_ids=ids(prompt + drafts[:accepted] + [correction, 13])).logits[0, -2:]
    assert torch.allclose(cached, fresh, atol=1e-5, rtol=0)
    assert cache.get_seq_length() == len(prompt) + accepted + 2


def test_no_deprecation_warnings(greedy_models):
    target, drafts = greedy_models
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec.speculative_generate(target, drafts["close"], ids(PROMPTS[0]), 8, DraftPolicy(k=3))
        spec.speculative_generate(target, drafts["close"], ids(PROMPTS[0]), 8, DraftPolicy(k=3),
                                  Sampling(temperature=0.8, generator=torch.Generator().manual_seed(0)))
        spec.greedy_generate(target, ids(PROMPTS[0]), 8)
    bad = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not bad, [str(w.message) for w in bad]
    if kv_cache.cache_keyword(target) == "cache":                    # why: the old name warns in transformers 5.x
        with pytest.warns(FutureWarning, match="past_key_values"), torch.no_grad():
            target(input_ids=ids([1, 2]), past_key_values=kv_cache.new_cache(target), use_cache=True)


# --------------------------------------------------------------------------- statistics, theory, errors

def test_stats(greedy_models):
    target, drafts = greedy_models
    for name, adaptive, kw in (("close", False, {}), ("random", False, {}), ("close", True, {}),
                               ("close", False, {"use_cache": False})):
        _, stats = spec.speculative_generate(target, drafts[name], ids(PROMPTS[1]), 30,
                                             DraftPolicy(k=4, adaptive=adaptive), **kw)
        assert stats.generated == 30 == stats.accepted + stats.target_calls
        assert stats.tokens_per_target_call == stats.generated / stats.target_calls
        assert stats.target_calls == len(stats.draft_lengths) == len(stats.accepted_counts)
        assert stats.drafted == sum(stats.draft_lengths) == stats.draft_calls
        assert stats.accepted == sum(stats.accepted_counts)
        assert all(0 <= a <= d for a, d in zip(stats.accepted_counts, stats.draft_lengths))
        assert stats.acceptance_rate == stats.accepted / stats.drafted
        assert stats.seconds > 0 and stats.tokens_per_second == stats.generated / stats.seconds
        if not adaptive and not kw:
            assert max(stats.draft_lengths) == 4
    _, stats = spec.speculative_generate(target, drafts["self"], ids(PROMPTS[1]), 40,
                                         DraftPolicy(k=2, adaptive=True, max_k=6))
    assert stats.draft_lengths[:3] == [2, 4, 6] and max(stats.draft_lengths) == 6     # +2 per all-accepted round
    _, stats = spec.speculative_generate(target, drafts["random"], ids(PROMPTS[1]), 20, DraftPolicy(k=4, adaptive=True))
    assert stats.draft_lengths[:4] == [4, 3, 2, 1] and min(stats.draft_lengths[:-1]) == 1   # -1, not below 1
    empty = spec.SpeculativeStats()
    assert math.isnan(empty.acceptance_rate) and math.isnan(empty.tokens_per_target_call)
    out, stats = spec.speculative_generate(target, drafts["close"], ids(PROMPTS[1]), 0)
    assert torch.equal(out, ids(PROMPTS[1])) and stats.target_calls == 0


def test_theory():
    assert acceptance.expected_tokens_per_call(0.0, 4) == 1.0
    assert acceptance.expected_tokens_per_call(1.0, 4) == 5.0
    assert acceptance.expected_tokens_per_call(0.5, 2) == pytest.approx(1.75)
    assert acceptance.expected_tokens_per_call(0.8, 3) == pytest.approx(1 + 0.8 + 0.64 + 0.512)
    assert acceptance.expected_tokens_per_call(1 - 1e-9, 4) == pytest.approx(5.0)               # continuous at 1
    assert acceptance.expected_speedup(0.5, 2, 0.1) == pytest.approx(1.75 / 1.2)
    assert acceptance.expected_speedup(0.5, 2, 0.1, verify_cost=1.9) == pytest.approx(1.75 / 2.1)
    assert acceptance.expected_speedup(1.0, 4, 0.0) == 5.0
    for bad in ((-0.1, 2), (1.1, 2), (0.5, 0), (0.5, 1.5), (0.5, True)):
        with pytest.raises(ValueError):
            acceptance.expected_tokens_per_call(*bad)
    with pytest.raises(ValueError, match="cost_ratio"):
        acceptance.expected_speedup(0.5, 2, -0.1)
    with pytest.raises(ValueError, match="verify_cost"):
        acceptance.expected_speedup(0.5, 2, 0.1, verify_cost=0)


def _position_logits(model, tokens, prefix, width):
    """The logits after ``tokens[:prefix + 1]``, from a cached forward over ``width`` new tokens."""
    keyword = kv_cache.cache_keyword(model)
    with torch.no_grad():
        cache = kv_cache.new_cache(model)
        model(input_ids=tokens[:, :prefix], **{keyword: cache})
        return model(input_ids=tokens[:, prefix:prefix + width], **{keyword: cache}).logits[0, 0].float()


def test_dynamic_int8_makes_the_verify_pass_another_function(greedy_models):
    """Greedy speculative decoding reproduces the target's output only if a verify pass over several
    tokens computes the logits that one-token steps compute. fp32: equal up to rounding. Dynamic
    int8 quantization scales each forward's activations by ONE number computed from all its tokens,
    so a position's logits depend on the other tokens of the pass (notebook 06 measures both, and
    bf16, on the real teacher). The quantized model's output layer has a weight *method*: the
    vocabulary check reads it."""
    from course_lib.compress import quantize_dynamic_int8
    from course_lib.llm import output_vocab_size

    target, _ = greedy_models
    tokens = torch.tensor([[3, 7, 9, 4, 30, 1, 12, 8]])
    one, four = _position_logits(target, tokens, 4, 1), _position_logits(target, tokens, 4, 4)
    assert (one - four).abs().max() <= 1e-4
    q_target, replaced = quantize_dynamic_int8(target)
    assert "lm_head" in replaced and output_vocab_size(q_target) == V
    one, four = _position_logits(q_target, tokens, 4, 1), _position_logits(q_target, tokens, 4, 4)
    assert (one - four).abs().max() > 1e-3
    out, stats = spec.speculative_generate(q_target, q_target, ids(PROMPTS[0]), 8, DraftPolicy(k=2))   # it runs
    assert out.shape == (1, len(PROMPTS[0]) + 8) and stats.generated == 8


def test_required_acceptance():
    for speedup, k, c, v in [(1.0, 4, 0.15, 1.0), (1.5, 4, 0.15, 1.9), (1.0, 2, 0.4, 1.1), (2.0, 6, 0.05, 1.2)]:
        alpha = acceptance.required_acceptance(speedup, k, c, v)
        assert 0 < alpha < 1
        assert acceptance.expected_speedup(alpha, k, c, v) == pytest.approx(speedup, rel=1e-9)
        assert acceptance.expected_speedup(alpha - 1e-3, k, c, v) < speedup
    assert acceptance.required_acceptance(1.0, 2, 0.5, 2.5) != acceptance.required_acceptance(1.0, 2, 0.5, 2.5)   # nan: 3/3.5 < 1
    assert acceptance.required_acceptance(0.5, 1, 0.1, 1.0) == 0.0                                        # 1/1.1 >= 0.5
    with pytest.raises(ValueError, match="speedup"):
        acceptance.required_acceptance(0.0, 2, 0.1)


@pytest.mark.parametrize("draft_name", ["self", "close", "random"])
def test_simulated_rounds_equal_the_generators_statistics(greedy_models, draft_name):
    """One forward of the draft over the target's greedy output predicts every greedy round, for any
    K and for the adaptive length: the simulated statistics equal the generator's, field by field."""
    target, drafts = greedy_models
    draft = drafts[draft_name]
    for prompt in PROMPTS:
        expected, _ = spec.greedy_generate(target, ids(prompt), 16)
        agreement = spec.greedy_agreement(draft, expected, len(prompt))
        assert agreement.shape == (16,) and agreement.dtype == torch.bool
        for k, adaptive in [(1, False), (2, False), (3, False), (5, False), (2, True), (1, True)]:
            policy = DraftPolicy(k=k, adaptive=adaptive)
            _, live = spec.speculative_generate(target, draft, ids(prompt), 16, policy)
            simulated = spec.simulate_greedy(agreement, policy)
            for field in ("target_calls", "draft_calls", "drafted", "accepted", "generated", "draft_lengths",
                          "accepted_counts"):
                assert getattr(simulated, field) == getattr(live, field), (draft_name, prompt, k, adaptive, field)
    with pytest.raises(ValueError, match="prompt_length"):
        spec.greedy_agreement(draft, expected, expected.shape[1])


def test_simulate_greedy_limits():
    always, never = torch.ones(10, dtype=torch.bool), torch.zeros(10, dtype=torch.bool)
    s = spec.simulate_greedy(always, DraftPolicy(k=4))   # rounds of 5 tokens: 5 + 5 (the last drafts 4 of the 5 left)
    assert (s.target_calls, s.generated, s.draft_lengths, s.accepted_counts) == (2, 10, [4, 4], [4, 4])
    s = spec.simulate_greedy(never, DraftPolicy(k=3))    # every round: 1 token of the target's
    assert (s.target_calls, s.generated, s.accepted) == (10, 10, 0) and s.draft_lengths == [3] * 7 + [2, 1, 0]
    s = spec.simulate_greedy(always, DraftPolicy(k=1, adaptive=True, max_k=4))
    assert s.draft_lengths == [1, 3, 3] and s.generated == 10     # 2 + 4 + 4 tokens
    with pytest.raises(ValueError, match="confidence_threshold"):   # the agreement holds no probabilities
        spec.simulate_greedy(always, DraftPolicy(k=2, confidence_threshold=0.4))
    with pytest.raises(TypeError, match=r"policy must be a DraftPolicy \(e.g. DraftPolicy\(k=4\)\), got int"):
        spec.simulate_greedy(always, 4)


def test_errors(greedy_models):
    target, drafts = greedy_models
    draft, prompt = drafts["close"], ids(PROMPTS[0])
    run = lambda **kw: spec.speculative_generate(**{"target": target, "draft": draft, "input_ids": prompt,
                                                    "max_new_tokens": 4, **kw})
    with pytest.raises(ValueError, match="batch size 1"):
        run(input_ids=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        run(input_ids=torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        run(input_ids=torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"draft's vocabulary \(48 logits\) differs from the target's \(32\)"):
        run(draft=llama(3, 1.0, layers=2, hidden=32, vocab=48))
    with pytest.raises(ValueError, match="draft_temperature only applies"):
        run(draft_temperature=1.0)
    with pytest.raises(ValueError, match="draft_temperature must be > 0"):
        run(sampling=Sampling(temperature=0.7), draft_temperature=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        run(max_new_tokens=-1)
    # the parameters are objects: a bare int or dict is a TypeError that names the class to build
    with pytest.raises(TypeError, match=r"policy must be a DraftPolicy \(e.g. DraftPolicy\(k=4\)\), got int"):
        run(policy=4)
    with pytest.raises(TypeError, match="sampling must be a Sampling .*got float"):
        run(sampling=0.7)
    with pytest.raises(TypeError, match="policy must be a DraftPolicy .*got dict"):
        run(policy={"k": 4})
    with pytest.raises(TypeError):                               # the old keywords are gone
        run(k=4)
    sample = lambda *args, **kw: spec.speculative_sample(target, draft, prompt, 4, *args, **kw)
    with pytest.raises(ValueError, match="draft_at must be > 0"):
        sample(sampling=Sampling(temperature=0.7), draft_at=0.0)
    with pytest.raises(ValueError, match=r"temperature must be > 0 \(speculative_sample samples;"):
        sample(sampling=GREEDY)
    with pytest.raises(TypeError, match="draft_temperature"):    # speculative_sample has draft_at / judge_draft_at
        sample(sampling=Sampling(temperature=0.7), draft_temperature=1.0)
    with pytest.raises(TypeError, match="sampling must be a Sampling"):
        sample(DraftPolicy(), 0.7)
    out, _ = run(input_ids=torch.tensor(PROMPTS[0]))             # a 1-D prompt is batch 1
    assert out.shape == (1, len(PROMPTS[0]) + 4)


@pytest.mark.parametrize("build, message", [
    (lambda: Sampling(temperature=-0.5), r"temperature must be >= 0 \(0: greedy\)"),
    (lambda: Sampling(temperature=float("nan")), "temperature must be >= 0"),
    (lambda: Sampling(temperature=True), "temperature must be >= 0"),
    (lambda: Sampling(temperature=1.0, top_k=0), "top_k must be None or an int >= 1"),
    (lambda: Sampling(temperature=1.0, top_k=2.0), "top_k must be None or an int >= 1"),
    (lambda: Sampling(temperature=1.0, top_p=0.0), r"top_p must be None or in \(0, 1\]"),
    (lambda: Sampling(temperature=1.0, top_p=1.5), r"top_p must be None or in \(0, 1\]"),
    (lambda: Sampling(top_k=5), "top_k / top_p filter a sampling distribution: they need temperature > 0"),
    (lambda: Sampling(top_p=0.9), "they need temperature > 0"),
    (lambda: DraftPolicy(k=0), "k .* >= 1"),
    (lambda: DraftPolicy(k=True), "k .* >= 1"),
    (lambda: DraftPolicy(k=2.0), "k .* >= 1"),
    (lambda: DraftPolicy(k=4, max_k=0), "max_k .* >= 1"),
    (lambda: DraftPolicy(k=4, max_k=2), r"max_k \(2\) must be >= k \(4\)"),
    (lambda: DraftPolicy(confidence_threshold=1.5), r"confidence_threshold must be None or in \[0, 1\]"),
    (lambda: DraftPolicy(confidence_threshold=-0.1), r"confidence_threshold must be None or in \[0, 1\]"),
])
def test_parameter_objects_validate_when_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_parameter_objects():
    """max_k defaults to 2k (resolved when built), equality by value, frozen, greedy, the generator left
    out of the comparison."""
    assert DraftPolicy().k == 4 and DraftPolicy().max_k == 8
    assert DraftPolicy(k=3).max_k == 6 and DraftPolicy(k=3, max_k=3).max_k == 3
    assert DraftPolicy(k=3) == DraftPolicy(k=3, max_k=6) != DraftPolicy(k=3, max_k=7)
    assert DraftPolicy(k=3) != DraftPolicy(k=3, adaptive=True)
    assert hash(DraftPolicy(k=3)) == hash(DraftPolicy(k=3, max_k=6))
    assert DraftPolicy(confidence_threshold=0.0).confidence_threshold == 0.0       # the closed ends are allowed
    assert Sampling() == GREEDY and GREEDY.greedy and GREEDY.generator is None
    hot = Sampling(temperature=0.7, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(0))
    assert not hot.greedy and Sampling(temperature=1.0, top_p=1.0).top_p == 1.0
    assert hot == Sampling(temperature=0.7, top_k=10, top_p=0.9)                   # the generator is not compared
    assert hot != Sampling(temperature=0.7, top_k=10)
    for obj, name, value in ((DraftPolicy(), "k", 2), (DraftPolicy(), "max_k", 3), (GREEDY, "temperature", 1.0),
                             (hot, "generator", None)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, name, value)
    assert {"Sampling", "DraftPolicy", "GREEDY"} <= set(spec.__all__)


def test_policy_object_gives_the_greedy_output(greedy_models):
    """``speculative_generate(..., DraftPolicy(k=3))`` is the target's greedy output, the same tokens and
    statistics as with ``GREEDY`` spelled out and as the default policy's tokens."""
    target, drafts = greedy_models
    for prompt in PROMPTS[:2]:
        expected, _ = spec.greedy_generate(target, ids(prompt), 12)
        out, stats = spec.speculative_generate(target, drafts["close"], ids(prompt), 12, DraftPolicy(k=3))
        again, stats_again = spec.speculative_generate(target, drafts["close"], ids(prompt), 12,
                                                       policy=DraftPolicy(k=3), sampling=GREEDY)
        default, _ = spec.speculative_generate(target, drafts["close"], ids(prompt), 12)
        assert torch.equal(out, expected) and torch.equal(again, expected) and torch.equal(default, expected)
        assert max(stats.draft_lengths) <= 3 and stats.accepted_counts == stats_again.accepted_counts
