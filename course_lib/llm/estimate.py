"""How long notebook 06's cached runs should take on a GPU: its work counted from ``LLMSettings`` and
``SpeculativeSettings`` (:mod:`course_lib.estimate` gives the time and states its assumptions).

FLOPs per token: ``2 x`` the matmul parameters for a forward pass (the output layer included: a tied
embedding is a look-up on the way in and a 49,152-row matmul on the way out), ``6 x`` for a training
step (Kaplan et al. 2020, section 2.1). Part 1 (:mod:`course_lib.llm.experiment`), per seed: the
teacher's top-k over the training blocks, the forward-KL student, the ``alone`` student (it trains
until the distilled run's time plus the teacher's caching: counted as that much work again); on the
first seed also reverse KL, JSD and the sequence-level student, whose teacher continuations are
decoding steps. Every student and the teacher on the held-out blocks. Part 2
(:mod:`course_lib.llm.speculative_experiment`): decoding steps of the target, for the prompt screen
(``candidates`` greedy continuations) and for the live figures (each live prompt decoded by about
:data:`LIVE_CONFIGURATIONS` configurations, counted as target steps). The configurations of the two
teachers are written here (the hub is not reachable offline). Not in an artifact's key.
"""
from __future__ import annotations

import math

from ..estimate import Work, summary
from ..profiles import FULL_LLM, LLMSettings, SpeculativeSettings, get_profile

__all__ = ["CONFIGS", "LIVE_CONFIGURATIONS", "layer_parameters", "work", "full_profile_summary"]

# hidden, intermediate, layers, attention heads, key/value heads, vocabulary (the models' config.json)
CONFIGS = {
    None: dict(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49_152),   # SmolLM2-135M
    "HuggingFaceTB/SmolLM2-360M-Instruct": dict(hidden=960, intermediate=2560, layers=32, heads=15, kv_heads=5,
                                                vocab=49_152),
}
# target alone in fp32, bf16 and int8; seven drafts; assisted generation in our loop and in generate();
# prompt lookup; the bf16 and int8 pairs
LIVE_CONFIGURATIONS = 15


def layer_parameters(hidden: int, intermediate: int, heads: int, kv_heads: int) -> int:
    """The matmul parameters of one Llama decoder layer (Q, K, V, O; gate, up, down)."""
    kv = hidden * kv_heads // heads
    return 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * intermediate


def _config(settings: LLMSettings) -> dict:
    if settings.teacher_model not in CONFIGS:
        raise ValueError(f"no configuration written for {settings.teacher_model!r}; one of "
                         f"{[k for k in CONFIGS if k]} or None (the quick profile's SmolLM2-135M)")
    return CONFIGS[settings.teacher_model]


def work(settings: LLMSettings, speculative: SpeculativeSettings | None = None) -> list[Work]:
    """Notebook 06's work in these settings (part 2 too when ``speculative`` is given)."""
    c = _config(settings)
    per_layer = layer_parameters(c["hidden"], c["intermediate"], c["heads"], c["kv_heads"])
    head = c["hidden"] * c["vocab"]
    teacher = 2 * (per_layer * c["layers"] + head)                      # forward FLOPs per token
    student = 2 * (per_layer * len(settings.student_layers) + head)
    train_tokens = settings.steps * settings.batch_size * settings.block_size
    cache_tokens = settings.train_blocks * settings.block_size
    n, first = len(settings.seeds), 1
    out = [Work("teacher top-k of the training blocks", teacher, cache_tokens, runs=n, train=False),
           Work("forward KL", student, train_tokens, runs=n, steps=settings.steps * n),
           # alone: the distilled run's time plus the caching, as work
           Work("alone (equal wall time)", student, train_tokens, runs=n, steps=settings.steps * n),
           Work("alone: the caching's time", teacher, cache_tokens, runs=n, train=False),
           Work("reverse KL and JSD", student, train_tokens, runs=2 * first, steps=2 * settings.steps)]
    new = settings.block_size - settings.prompt_tokens
    out += [Work("teacher continuations (sequence-level KD)", teacher, settings.train_blocks * new, train=False,
                 decode_steps=new * math.ceil(settings.train_blocks / 16), weight_bytes=teacher / 2 * 4),
            Work("responses student", student, train_tokens, steps=settings.steps),
            Work("held-out evaluation", student, settings.eval_blocks * settings.block_size,
                 runs=3 * n + 3 + 1, train=False)]
    if speculative is not None:
        steps = speculative.new_tokens * (speculative.candidates + LIVE_CONFIGURATIONS * speculative.live_prompts)
        out.append(Work("speculative decoding: target steps", decode_steps=steps, weight_bytes=teacher / 2 * 4))
    return out


def full_profile_summary(gpu: str = "T4") -> str:
    """What notebook 06 prints: the full profile's estimate on ``gpu`` (both parts)."""
    full = get_profile("full")       # FULL_LLM: the hub teacher's settings, even where a test swaps in a stand-in
    return summary(work(FULL_LLM, full.speculative), gpu) + "; its cached runs still run on the CPU"
