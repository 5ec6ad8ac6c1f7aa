"""Notebook 06 part 2's measurements: speculative decoding with the real teacher as the target and
part 1's students as drafts, built once as a cached artifact (``make setup``) like
:mod:`course_lib.llm.experiment`, whose students it loads.

Greedy, batch 1, on this machine's threads (the papers' and ``transformers``' setting). Every
speculative output is checked token for token against the target's own greedy output.

**Prompts.** ``prompt_tokens``-token openings of held-out Hamlet blocks evenly spaced over the play
(``evaluation_blocks``). A prompt whose greedy continuation by the target is degenerate (more
than ``max_repeat`` of its 4-grams repeat an earlier one: "a word, a word, a word") is dropped and
counted; repetitive text flatters drafts and prompt lookup alike. ``prompts`` are kept; the first
``live_prompts`` of them are also decoded for the wall-clock figures.

**Drafts.** Every student of part 1 is the same 7-layer, layer-pruned copy of the teacher:
``random layers`` (that architecture with its layers re-initialised: an untrained student),
``pruned copy`` (the teacher's layers, before training: the students' starting point), ``alone``,
``forward KL`` (token-level KD) and ``responses`` (sequence-level KD) of the first seed, and the
``alone`` / ``forward KL`` students of the second seed.

**What is measured.**

- The target alone: greedy tokens/s; the cost of one cached forward over ``n`` new tokens, ``n`` in
  ``verify_tokens``, as a ratio ``v(n)`` of the one-token step (the verify pass of ``K`` drafts is
  ``n = K + 1``; the theory assumes ``v = 1``). The same for the target in **bf16** and quantized
  to **dynamic int8** (``compress.quantize_dynamic_int8``, every ``nn.Linear``). Neither is free:
  speculative decoding reproduces the target's greedy output only if the verify pass computes the
  same logits as one-token decoding steps. :func:`verify_difference` measures how far apart they
  are: in fp32 by rounding only; in bf16 by rounding at 8 bits of mantissa, with different kernels
  for one and several tokens (near-tied argmaxes can flip); in dynamic int8 each forward quantizes
  its activations with one scale computed from all its tokens: a different function
  (``tests/llm/test_speculative.py`` pins it). So fp32 outputs are checked equal to greedy; bf16 and
  int8 outputs are counted (``identical_outputs``), not checked.
- Each draft's step as a fraction ``c`` of the target's step.
- Acceptance for every ``K`` of ``simulate_k`` and for the adaptive length, **exactly and without
  decoding**: one forward of the draft over the target's greedy continuation decides every greedy
  round (``speculative.greedy_agreement`` / ``simulate_greedy``; a test checks that the simulation
  equals the generator's statistics field by field, and here the live runs are compared with it
  too). Per draft: ``alpha`` (the fraction of positions where the draft's greedy choice is the
  target's: the theory's per-token acceptance), the acceptance rate (accepted / drafted) and tokens
  per target call, measured and predicted by ``(1 - alpha^(K+1)) / (1 - alpha)``.
- Wall clock on the live prompts: every draft at ``live_k``; the distilled draft with
  ``transformers``' default assisted-generation rule (``assistant_tokens`` drafts, stop when the
  draft's probability falls below ``confidence``) in our loop and in ``generate(assistant_model=)``;
  prompt-lookup decoding (``prompt_lookup_num_tokens``); and the bf16 and int8 pairs (target and
  distilled draft in that precision) against that target's own greedy decoding and against fp32
  greedy, with the number of prompts whose output is identical to the former.
- The acceptance each configuration would need for break-even and for 1.5x
  (``speculative.required_acceptance``), at the measured ``c`` and ``v``.

Everything goes to ``results.json`` in the artifact; :func:`load_results` reads it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ..artifacts import artifact_key
from ..experiments import CachedExperiment
from ..profiles import PROFILES, LLMSettings, SpeculativeSettings
from . import acceptance, kv_cache
from . import experiment as llm_experiment
from . import speculative as spec
from .corpus import token_blocks
from .students import pruned_student
from .teacher import load_teacher

EXPERIMENT_NAME = "speculative_decoding"
RESULTS_FILE = "results.json"
RECIPE_VERSION = 1


QUICK = PROFILES["quick"].speculative   # the settings make setup builds (profiles.SpeculativeSettings)


def repeated_fraction(tokens: list[int], n: int = 4) -> float:
    """Fraction of the ``n``-grams of ``tokens`` that already occurred earlier in it."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


def forward_ms(model, prefix: torch.Tensor, new: int, repeats: int = 7) -> float:
    """Median milliseconds of one cached forward over the last ``new`` tokens of ``prefix`` after
    the others (what a decoding step, ``new = 1``, or a verify pass costs)."""
    keyword = kv_cache.cache_keyword(model)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            cache = kv_cache.new_cache(model)
            model(input_ids=prefix[:, :-new], **{keyword: cache})
            start = time.perf_counter()
            model(input_ids=prefix[:, -new:], **{keyword: cache})
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def verify_difference(model, prefix: torch.Tensor, new: int) -> float:
    """Max |difference| between the logits of the last ``new`` positions of ``prefix`` computed by
    ``new`` one-token cached steps (decoding) and by one cached forward over all ``new`` (a verify
    pass). Exact arithmetic gives 0; fp32 rounding gives ~1e-5; a larger value is how far the verify
    pass is from the function that plain decoding computes."""
    keyword = kv_cache.cache_keyword(model)
    start = prefix.shape[1] - new
    with torch.no_grad():
        cache = kv_cache.new_cache(model)
        model(input_ids=prefix[:, :start], **{keyword: cache})
        steps = torch.cat([model(input_ids=prefix[:, i:i + 1], **{keyword: cache}).logits[0].float()
                           for i in range(start, prefix.shape[1])])
        cache = kv_cache.new_cache(model)
        model(input_ids=prefix[:, :start], **{keyword: cache})
        verify = model(input_ids=prefix[:, start:], **{keyword: cache}).logits[0].float()
    return float((steps - verify).abs().max())


def random_layers_student(teacher, settings: LLMSettings):
    """The students' architecture with its trainable layers re-initialised (normal, std 0.02, as
    Llama's ``initializer_range``; norms at 1): an untrained student. Embeddings and output stay the
    teacher's, frozen, as in every student."""
    student = pruned_student(teacher, layers=settings.student_layers)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in student.named_parameters():
            if p.requires_grad:
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
                else:
                    p.fill_(1.0)
    return student.eval()


def _drafts(teacher, llm_settings) -> dict:
    second = llm_settings.seeds[1]
    return {
        "random layers": random_layers_student(teacher, llm_settings),
        "pruned copy": pruned_student(teacher, layers=llm_settings.student_layers).eval(),
        "alone": llm_experiment.load_student("alone", teacher, llm_settings),
        "forward KL": llm_experiment.load_student("forward_kl", teacher, llm_settings),
        "responses": llm_experiment.load_student("responses", teacher, llm_settings),
        f"alone (seed {second})": llm_experiment.load_student("alone", teacher, llm_settings, seed=second),
        f"forward KL (seed {second})": llm_experiment.load_student("forward_kl", teacher, llm_settings, seed=second),
    }


LIVE_DRAFTS = ("random layers", "pruned copy", "alone", "forward KL", "responses")


def _greedy_all(model, prompts, new_tokens, eos):
    outs, seconds = [], 0.0
    for prompt in prompts:
        out, s = spec.greedy_generate(model, prompt, new_tokens, eos_token_id=eos)
        outs.append(out)
        seconds += s
    return outs, sum(o.shape[1] - p.shape[1] for o, p in zip(outs, prompts)) / seconds


def _agreement_stats(draft, prompts, references, settings) -> dict:
    """alpha and the simulated rounds for every K (and the adaptive length) over all prompts."""
    agreements = [spec.greedy_agreement(draft, ref, p.shape[1]) for p, ref in zip(prompts, references)]
    alpha = float(torch.cat(agreements).float().mean())
    rows = {}
    policies = [(str(k), spec.DraftPolicy(k=k)) for k in settings.simulate_k] + [
        ("adaptive", spec.DraftPolicy(k=2, adaptive=True))]
    for label, policy in policies:
        total = spec.SpeculativeStats()
        for a in agreements:
            s = spec.simulate_greedy(a, policy)
            for f in ("target_calls", "drafted", "accepted", "generated"):
                setattr(total, f, getattr(total, f) + getattr(s, f))
        rows[label] = {"acceptance_rate": round(total.acceptance_rate, 4),
                       "tokens_per_call": round(total.tokens_per_target_call, 4),
                       "tokens_per_call_theory": round(acceptance.expected_tokens_per_call(alpha, policy.k), 4)
                       if not policy.adaptive else None,
                       "mean_drafted": round(total.drafted / total.target_calls, 3)}
    return {"alpha": round(alpha, 4), "tokens": int(sum(len(a) for a in agreements)), "by_k": rows,
            "agreements": agreements}


def _live(target, draft, prompts, references, new_tokens, eos, policy: spec.DraftPolicy,
          check: bool = True) -> tuple[dict, spec.SpeculativeStats]:
    """Decode every prompt greedily with ``policy``; the totals. ``check``: raise unless every output is
    its reference (the target's own greedy output); else count the identical ones (``identical_outputs``)."""
    total, identical = spec.SpeculativeStats(), 0
    for prompt, reference in zip(prompts, references):
        out, stats = spec.speculative_generate(target, draft, prompt, new_tokens, policy, eos_token_id=eos)
        identical += torch.equal(out, reference)
        if check and not torch.equal(out, reference):
            raise AssertionError(f"speculative output differs from the target's greedy output ({policy})")
        for f in ("target_calls", "drafted", "accepted", "generated", "seconds"):
            setattr(total, f, getattr(total, f) + getattr(stats, f))
        total.draft_lengths += stats.draft_lengths
        total.accepted_counts += stats.accepted_counts
    row = {"acceptance_rate": round(total.acceptance_rate, 4),
           "tokens_per_call": round(total.tokens_per_target_call, 4),
           "tokens_per_second": round(total.tokens_per_second, 2), "identical_outputs": identical}
    return row, total


def _reachable(alpha: float) -> float | None:
    """A required acceptance for JSON: ``None`` where even ``alpha = 1`` falls short (``nan``)."""
    return None if math.isnan(alpha) else round(alpha, 3)


def _generate_rate(model, prompts, new_tokens, **kwargs) -> float:
    start, n = time.perf_counter(), 0
    for prompt in prompts:
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=new_tokens, **kwargs)
        n += out.shape[1] - prompt.shape[1]
    return n / (time.perf_counter() - start)


def run_experiment(folder: Path, settings: SpeculativeSettings = QUICK, progress: bool = True, *,
                   teacher=None, tokenizer=None, llm_settings: LLMSettings | None = None) -> dict:
    """Measure everything of the module docstring; write ``results.json`` into ``folder``.
    ``llm_settings`` (part 1's: its teacher is the target, its saved students the drafts) defaults to
    ``settings.llm``; ``teacher`` and ``tokenizer`` to ``load_teacher(model=llm_settings.teacher_model)``."""
    from ..compress import quantize_dynamic_int8

    def say(message: str) -> None:
        if progress:
            print(f"[speculative] {message}", flush=True)

    build_start = time.perf_counter()
    torch.manual_seed(0)
    llm_settings = settings.llm if llm_settings is None else llm_settings
    if teacher is None or tokenizer is None:
        teacher, tokenizer = load_teacher(model=llm_settings.teacher_model)
    eos = tokenizer.eos_token_id
    _, held_out = token_blocks(tokenizer, llm_settings.block_size, progress=False)
    results: dict = {"settings": dataclasses.asdict(settings)}

    # prompts, screened for degenerate continuations of the target
    prompts, references, dropped, seconds, indices = [], [], [], 0.0, []
    for index, block in enumerate(llm_experiment.evaluation_blocks(held_out, settings.candidates)):
        if len(prompts) == settings.prompts:
            break
        prompt = block[:settings.prompt_tokens][None]
        out, s = spec.greedy_generate(teacher, prompt, settings.new_tokens, eos_token_id=eos)
        new = out[0, prompt.shape[1]:].tolist()
        if repeated_fraction(new) > settings.max_repeat:
            dropped.append(tokenizer.decode(new)[:80])
            continue
        prompts.append(prompt)
        references.append(out)
        indices.append(index)
        seconds += s
    live, live_refs = prompts[:settings.live_prompts], references[:settings.live_prompts]
    results["prompts"] = {
        "kept": len(prompts), "candidate_indices": indices, "dropped_as_degenerate": len(dropped),
        "dropped": dropped, "live": len(live),
        "example": [tokenizer.decode(references[0][0, :settings.prompt_tokens]),
                    tokenizer.decode(references[0][0, settings.prompt_tokens:])]}
    say(f"{len(prompts)} prompts kept, {len(dropped)} degenerate dropped")

    # the target alone, fp32, bf16 and int8: decoding speed and the cost of a forward over n tokens
    targets = {"fp32": teacher, "bf16": copy.deepcopy(teacher).to(torch.bfloat16),
               "int8": quantize_dynamic_int8(teacher)[0]}
    verify_prefix = references[0][:, :settings.prompt_tokens + max(settings.verify_tokens)]
    results["target"] = {}
    own_greedy = {}
    for name, model in targets.items():
        refs, rate = _greedy_all(model, live, settings.new_tokens, eos)
        own_greedy[name] = refs
        if name == "fp32" and not all(torch.equal(a, b) for a, b in zip(refs, live_refs)):
            raise AssertionError("the target's greedy output changed between two runs")
        ms = {n: forward_ms(model, verify_prefix, n, settings.timing_repeats) for n in settings.verify_tokens}
        difference = verify_difference(model, verify_prefix, 4)
        results["target"][name] = {"tokens_per_second": round(rate, 2),
                                   "verify_vs_steps_max_logit_diff": round(difference, 6),
                                   "forward_ms": {str(n): round(v, 2) for n, v in ms.items()},
                                   "verify_ratio": {str(n): round(v / ms[1], 3) for n, v in ms.items()}}
        say(f"target {name}: {rate:.1f} tokens/s, forward ms by new tokens {results['target'][name]['forward_ms']}")
    fp32_rate = results["target"]["fp32"]["tokens_per_second"]
    for name in ("bf16", "int8"):
        results["target"][name]["same_continuations_as_fp32"] = sum(
            torch.equal(a, b) for a, b in zip(own_greedy[name], live_refs))

    # the drafts: cost, and every greedy round predicted from one forward each
    drafts = _drafts(teacher, llm_settings)
    step = {name: results["target"][name]["forward_ms"]["1"] for name in targets}    # one decoding step
    results["drafts"] = {}
    agreements = {}
    for name, draft in drafts.items():
        row = _agreement_stats(draft, prompts, references, settings)
        agreements[name] = row.pop("agreements")
        row["cost_ratio"] = round(forward_ms(draft, verify_prefix, 1, settings.timing_repeats) / step["fp32"], 4)
        results["drafts"][name] = row
        say(f"{name:<22} alpha {row['alpha']:.3f}  c {row['cost_ratio']:.3f}")

    # wall clock: every draft at live_k (checked against the simulation)
    k = settings.live_k
    results["live"] = {}
    for name in LIVE_DRAFTS:
        row, total = _live(teacher, drafts[name], live, live_refs, settings.new_tokens, eos, spec.DraftPolicy(k=k))
        predicted = [spec.simulate_greedy(a, spec.DraftPolicy(k=k)) for a in agreements[name][:len(live)]]
        row["matches_simulation"] = total.accepted_counts == [c for s in predicted for c in s.accepted_counts]
        row["speedup"] = round(row["tokens_per_second"] / fp32_rate, 3)
        results["live"][f"{name} K={k}"] = row
        say(f"{name} K={k}: {row}")

    # transformers' default rule, in our loop and in transformers; prompt lookup
    distilled = drafts["forward KL"]
    rule = spec.DraftPolicy(k=settings.assistant_tokens, confidence_threshold=settings.confidence)
    row, _ = _live(teacher, distilled, live, live_refs, settings.new_tokens, eos, rule)
    row["speedup"] = round(row["tokens_per_second"] / fp32_rate, 3)
    results["live"][f"forward KL, {settings.assistant_tokens} drafts, confidence stop {settings.confidence}"] = row
    say(f"forward KL with transformers' default rule, our loop: {row}")
    row, _ = _live(teacher, distilled, live, live_refs, settings.new_tokens, eos,
                   spec.DraftPolicy(k=k, adaptive=True, confidence_threshold=settings.confidence))
    row["speedup"] = round(row["tokens_per_second"] / fp32_rate, 3)
    results["live"][f"forward KL, adaptive from K={k}, confidence stop {settings.confidence}"] = row
    say(f"forward KL adaptive from K={k} with the confidence stop: {row}")
    rate = _generate_rate(teacher, live, settings.new_tokens, assistant_model=distilled)
    results["assisted_generation"] = {"tokens_per_second": round(rate, 2), "speedup": round(rate / fp32_rate, 3)}
    rate = _generate_rate(teacher, live, settings.new_tokens, prompt_lookup_num_tokens=settings.prompt_lookup)
    results["prompt_lookup"] = {"tokens_per_second": round(rate, 2), "speedup": round(rate / fp32_rate, 3)}
    say(f"assisted generation {results['assisted_generation']}, prompt lookup {results['prompt_lookup']}")

    # the bf16 and int8 pairs against their target's own greedy decoding and fp32 greedy
    results["pairs"] = {}
    for name, cast in [("bf16", lambda m: copy.deepcopy(m).to(torch.bfloat16)),
                       ("int8", lambda m: quantize_dynamic_int8(m)[0])]:
        draft, target, refs = cast(distilled), targets[name], own_greedy[name]
        rate = results["target"][name]["tokens_per_second"]
        pair = {"cost_ratio": round(forward_ms(draft, verify_prefix, 1, settings.timing_repeats) / step[name], 4),
                "alpha": round(float(torch.cat([spec.greedy_agreement(draft, r, p.shape[1])
                                                for p, r in zip(live, refs)]).float().mean()), 4)}
        for kk in (1, 2):
            row, _ = _live(target, draft, live, refs, settings.new_tokens, eos, spec.DraftPolicy(k=kk), check=False)
            row["speedup_over_own_greedy"] = round(row["tokens_per_second"] / rate, 3)
            row["speedup_over_fp32_greedy"] = round(row["tokens_per_second"] / fp32_rate, 3)
            pair[f"K={kk}"] = row
            say(f"{name} pair K={kk}: {row}")
        results["pairs"][name] = pair

    # what acceptance would be needed, at the measured costs
    needed = {}
    costs = [("fp32", results["drafts"]["forward KL"]["cost_ratio"])] + [
        (name, pair["cost_ratio"]) for name, pair in results["pairs"].items()]
    for name, c in costs:
        ratios = results["target"][name]
        for kk in (1, 2, 4):
            v = ratios["verify_ratio"].get(str(kk + 1))
            if v is None:
                continue
            needed[f"{name} K={kk}"] = {
                "c": c, "v": v,
                "break_even": _reachable(acceptance.required_acceptance(1.0, kk, c, v)),
                "1.5x": _reachable(acceptance.required_acceptance(1.5, kk, c, v)),
                "break_even_if_v_1": _reachable(acceptance.required_acceptance(1.0, kk, c, 1.0))}
    results["required_acceptance"] = needed
    results["build_seconds"] = round(time.perf_counter() - build_start, 1)
    results["machine"] = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


EXPERIMENT = CachedExperiment(
    EXPERIMENT_NAME, RECIPE_VERSION, settings_field="speculative", module=sys.modules[__name__],
    run=run_experiment, notebook="06",
    extra_key=lambda settings: {"students": artifact_key(**llm_experiment.experiment_key_inputs(settings.llm))},
    built_first=lambda settings, progress: llm_experiment.experiment(settings.llm, progress=progress))
experiment_key_inputs = EXPERIMENT.key_inputs
experiment, load_results = EXPERIMENT.folder, EXPERIMENT.load_results


def settings_for(profile) -> SpeculativeSettings:
    """``profile.speculative`` (``NotImplementedError`` where the profile has none), after checking
    that its part-1 settings are the profile's ``llm``: the target and drafts of the same profile."""
    settings = EXPERIMENT.settings_for(profile)
    if settings.llm != profile.llm:
        raise ValueError(f"profile {profile.name!r}: its speculative settings' llm is not its llm settings; "
                         f"build them with SpeculativeSettings(..., llm=<the profile's llm>)")
    return settings


def kept_prompts(held_out: torch.Tensor, results: dict) -> list[torch.Tensor]:
    """The kept prompts ``[1, prompt_tokens]`` of ``results``, rebuilt from the held-out blocks."""
    settings = results["settings"]
    blocks = llm_experiment.evaluation_blocks(held_out, settings["candidates"])
    return [blocks[i][:settings["prompt_tokens"]][None] for i in results["prompts"]["candidate_indices"]]


if __name__ == "__main__":
    EXPERIMENT.main()
