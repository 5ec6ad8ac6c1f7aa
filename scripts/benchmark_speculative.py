"""Speculative decoding on the real models, measured (issue 11; notebook 06 part 2 builds on it).

Target: the offline teacher (SmolLM2-135M-Instruct). Drafts: notebook 06's 7-layer students from
``course_lib.llm_experiment``'s artifact (trained alone, distilled with forward KL) and the same
layer-pruned copy untrained. Greedy, batch 1, fp32, on this machine's threads. Writes every figure to
``build/speculative.json`` (``--out``) and prints a summary:

- the target alone (KV-cached greedy, tokens/s) and the cost of one cached target forward over
  1, 2, 3 and 5 new tokens (the verify step; the theory assumes ~1 step for K+1 tokens);
- each draft's cost per step as a fraction ``c`` of a target step;
- per draft and K: acceptance rate, tokens per target call (measured, and the theory's
  ``(1 - a^(K+1)) / (1 - a)`` at the measured ``a``), tokens/s and speedup over the target alone;
  every speculative output is checked equal to the target's own greedy output;
- ``transformers``' assisted generation with the distilled draft and prompt-lookup decoding
  (``prompt_lookup_num_tokens=10``) on the same prompts.

Prompts: 48-token openings of held-out Hamlet blocks evenly spaced over the play. A prompt whose
greedy continuation by the target is degenerate (more than ``--max-repeat`` of its 4-grams repeat
an earlier one, e.g. "a word, a word, a word") is dropped and counted: repetitive text flatters
drafts and prompt lookup alike.

    python scripts/benchmark_speculative.py [--prompts 6] [--new-tokens 32] [--k 2 4]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import llm, llm_experiment, paths, speculative as spec  # noqa: E402
from course_lib.profiles import configure_threads  # noqa: E402


def repeated_fraction(tokens: list[int], n: int = 4) -> float:
    """Fraction of the ``n``-grams of ``tokens`` that already occurred earlier in it."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


def forward_ms(model, prefix: torch.Tensor, new: int, repeats: int = 7) -> float:
    """Median milliseconds of one cached forward over ``new`` tokens after ``prefix``."""
    keyword = spec.cache_keyword(model)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            cache = spec.new_cache(model)
            model(input_ids=prefix, **{keyword: cache})
            start = time.perf_counter()
            model(input_ids=prefix[:, -new:], **{keyword: cache})
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=6, help="prompts kept after the degeneracy screen")
    parser.add_argument("--candidates", type=int, default=16, help="held-out openings screened")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--k", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--max-repeat", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=None, help="default: build/speculative.json")
    args = parser.parse_args()
    configure_threads()
    torch.manual_seed(0)
    out_path = args.out or paths.build_dir() / "speculative.json"

    teacher, tokenizer = llm.load_teacher()
    settings = llm_experiment.QUICK
    _, held_out = llm.token_blocks(tokenizer, settings.block_size, progress=False)
    eos = tokenizer.eos_token_id
    figures: dict = {"machine": f"{torch.get_num_threads()} threads, torch {torch.__version__}",
                     "new_tokens": args.new_tokens, "k": args.k}

    # prompts, screened for degenerate target continuations
    prompts, greedy, seconds, dropped = [], [], 0.0, []
    for block in llm_experiment.evaluation_blocks(held_out, args.candidates):
        if len(prompts) == args.prompts:
            break
        prompt = block[:48][None]
        out, s = spec.greedy_generate(teacher, prompt, args.new_tokens, eos_token_id=eos)
        new = out[0, prompt.shape[1]:].tolist()
        if repeated_fraction(new) > args.max_repeat:
            dropped.append(tokenizer.decode(new)[:80])
            continue
        prompts.append(prompt)
        greedy.append(out)
        seconds += s
    generated = sum(o.shape[1] - p.shape[1] for o, p in zip(greedy, prompts))
    target_rate = generated / seconds
    figures["prompts"] = {"kept": len(prompts), "dropped_as_degenerate": len(dropped), "dropped": dropped}
    figures["target_tokens_per_second"] = round(target_rate, 2)
    print(f"target alone: {target_rate:.1f} tokens/s; {len(prompts)} prompts kept, {len(dropped)} degenerate dropped")

    verify_ms = {n: forward_ms(teacher, prompts[0], n) for n in (1, 2, 3, 5)}
    step = verify_ms[1]                              # one decoding step of the target
    figures["verify_ms"] = {str(n): round(ms, 1) for n, ms in verify_ms.items()}
    figures["verify_ratio"] = {str(n): round(ms / step, 2) for n, ms in verify_ms.items()}
    print("cached target forward, ms per call by new tokens:", figures["verify_ms"])

    drafts = {"pruned copy, untrained": llm.pruned_student(teacher, layers=settings.student_layers).eval(),
              "alone": llm_experiment.load_student("alone", teacher, settings),
              "forward KL": llm_experiment.load_student("forward_kl", teacher, settings)}
    figures["draft_cost_ratio"] = {n: round(forward_ms(d, prompts[0], 1) / step, 3) for n, d in drafts.items()}
    print("draft step / target step:", figures["draft_cost_ratio"])

    figures["speculative"] = {}
    for k in args.k:
        for name, draft in drafts.items():
            total = spec.SpeculativeStats()
            for prompt, reference in zip(prompts, greedy):
                out, stats = spec.speculative_generate(teacher, draft, prompt, args.new_tokens, k=k, eos_token_id=eos)
                if not torch.equal(out, reference):
                    raise AssertionError(f"{name}, K={k}: the output differs from the target's greedy output")
                for f in ("target_calls", "drafted", "accepted", "generated", "seconds"):
                    setattr(total, f, getattr(total, f) + getattr(stats, f))
            a = total.acceptance_rate
            row = {"acceptance": round(a, 4), "tokens_per_call": round(total.tokens_per_target_call, 3),
                   "tokens_per_call_theory": round(spec.expected_tokens_per_call(a, k), 3),
                   "tokens_per_second": round(total.tokens_per_second, 2),
                   "speedup": round(total.tokens_per_second / target_rate, 3)}
            figures["speculative"][f"{name} K={k}"] = row
            print(f"K={k} {name:<24} {row}")

    for label, kwargs in [("assisted generation (forward KL draft)", {"assistant_model": drafts["forward KL"]}),
                          ("prompt lookup (10)", {"prompt_lookup_num_tokens": 10})]:
        start, n = time.perf_counter(), 0
        for prompt in prompts:
            out = teacher.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                   max_new_tokens=args.new_tokens, **kwargs)
            n += out.shape[1] - prompt.shape[1]
        rate = n / (time.perf_counter() - start)
        figures[label] = {"tokens_per_second": round(rate, 2), "speedup": round(rate / target_rate, 3)}
        print(f"{label}: {rate:.1f} tokens/s ({rate / target_rate:.2f}x)")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"[benchmark_speculative] {out_path}")


if __name__ == "__main__":
    main()
