"""Tiny random Llama models and token blocks for tests and smoke runs (seconds on a CPU).
"""
from __future__ import annotations

import torch
import transformers
from torch import nn

__all__ = ["tiny_llama", "tiny_token_blocks"]


def tiny_llama(num_layers: int, *, seed: int = 0, vocab_size: int = 64, hidden_size: int = 32,
               max_positions: int = 256) -> nn.Module:
    """A small random ``LlamaForCausalLM`` (4 heads, 2 KV heads, untied embeddings), its weights
    drawn from ``seed``: a teacher and a student built with the same ``vocab_size`` share a
    vocabulary. For tests and smoke runs (``scripts/distill_llm.py --teacher tiny``)."""
    config = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                                      intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=max_positions, tie_word_embeddings=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return transformers.LlamaForCausalLM(config)


def tiny_token_blocks(n_blocks: int = 64, block_size: int = 32, *, vocab_size: int = 64, seed: int = 0) -> torch.Tensor:
    """``[n_blocks, block_size]`` int64 tokens that a model can learn: a random permutation ``perm``
    of the vocabulary (from ``seed``) is followed from a random first token, ``x[i + 1] = perm[x[i]]``,
    so every token but the first is determined by the one before it (the CE can fall to 0)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(vocab_size, generator=g)
    blocks = torch.empty(n_blocks, block_size, dtype=torch.long)
    blocks[:, 0] = torch.randint(vocab_size, (n_blocks,), generator=g)
    for i in range(1, block_size):
        blocks[:, i] = perm[blocks[:, i - 1]]
    return blocks
