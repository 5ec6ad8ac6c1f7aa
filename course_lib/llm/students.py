"""Students that share the LLM teacher's tokenizer: a pruned copy of the teacher's layers, or a
small random Llama (see :mod:`course_lib.llm`).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from ..models import count_parameters

__all__ = ["freeze_embeddings", "trainable_parameters", "pruned_student", "fresh_student"]


# --------------------------------------------------------------------------- students

def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"expected a Llama-family causal LM (model.model.layers), got {type(model).__name__}")
    return layers


def freeze_embeddings(model: nn.Module) -> nn.Module:
    """Turn off ``requires_grad`` of the vocabulary-sized matrices: the input embedding and the
    output head (one matrix when tied, as in SmolLM2). Returns ``model``."""
    model.get_input_embeddings().weight.requires_grad_(False)
    head = model.get_output_embeddings()
    if head is not None:
        head.weight.requires_grad_(False)
    return model


_freeze_embeddings = freeze_embeddings   # pruned_student's keyword argument shadows the name


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (a tied matrix counts once)."""
    return count_parameters(model, trainable_only=True)


def pruned_student(teacher: nn.Module, layers: Sequence[int] = (0, 29), *, freeze_embeddings: bool = True):
    """A copy of ``teacher`` keeping only its decoder ``layers`` (strictly increasing indices), in
    train mode, with ``requires_grad`` on except, if ``freeze_embeddings``, for the embeddings
    (and the tied ``lm_head``).

    DistilBERT's initialisation (Sanh et al. 2019, arXiv:1910.01108, which keeps every other BERT
    layer): the student starts from the teacher's own weights. Everything is copied, nothing is
    shared, so training the student leaves the teacher untouched. ``config.num_hidden_layers``
    (and ``config.layer_types`` where the model has it) are updated and each attention's
    ``layer_idx`` renumbered 0, 1, ...: the KV cache is indexed by it, so a kept layer 29 of a
    2-layer student would otherwise write past the cache's 2 layers. A few kept layers without
    training are not yet a language model: training (or distilling) them is what makes them one.
    """
    decoder = _decoder_layers(teacher)
    chosen = tuple(layers)
    if (not chosen or any(isinstance(i, bool) or not isinstance(i, int) for i in chosen)
            or any(b <= a for a, b in zip(chosen, chosen[1:])) or not 0 <= chosen[0] or chosen[-1] >= len(decoder)):
        raise ValueError(f"layers must be strictly increasing indices in [0, {len(decoder)}), got {tuple(layers)!r}")
    base = teacher.model
    base.layers = nn.ModuleList(decoder[i] for i in chosen)   # deep-copy only the kept layers
    try:
        student = copy.deepcopy(teacher)
    finally:
        base.layers = decoder
    config = student.config
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) == len(decoder):
        config.layer_types = [types[i] for i in chosen]
    config.num_hidden_layers = len(chosen)
    for new_index, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = new_index
    student.requires_grad_(True).train()
    if freeze_embeddings:
        _freeze_embeddings(student)
    return student


def _default_intermediate(hidden: int) -> int:
    """Llama's MLP width: 8/3 of ``hidden`` rounded up to a multiple of 64 (576 -> 1536, SmolLM2's)."""
    return 64 * math.ceil(8 * hidden / 3 / 64)


def fresh_student(source, *, hidden: int = 256, layers: int = 4, heads: int = 4, kv_heads: int | None = None,
                  intermediate: int | None = None, max_positions: int | None = None, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` (train mode) for the teacher's tokenizer.

    ``source``: the teacher's config (its ``vocab_size``, special-token ids, ``max_position_embeddings``
    and ``rms_norm_eps`` are kept) or a tokenizer (``len(tokenizer)`` ids). Input and output embeddings
    are tied (the 49,152 x ``hidden`` matrix is most of a small student: 12.6M of a 256-wide one's
    parameters). ``kv_heads`` defaults to ``heads`` (no grouped-query attention), ``intermediate`` to
    8/3 of ``hidden`` rounded up to a multiple of 64, ``max_positions`` to the teacher's (2048 for a
    tokenizer). ``seed`` makes the initialisation reproducible without touching the global RNG.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if hasattr(source, "to_dict") and hasattr(source, "vocab_size"):        # a config
        vocab = source.vocab_size
        special = {k: getattr(source, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        extra = {"max_position_embeddings": max_positions or source.max_position_embeddings,
                 "rms_norm_eps": getattr(source, "rms_norm_eps", 1e-6)}
    elif hasattr(source, "convert_tokens_to_ids"):                           # a tokenizer
        vocab = len(source)
        special = {"bos_token_id": source.bos_token_id, "eos_token_id": source.eos_token_id,
                   "pad_token_id": source.pad_token_id}
        extra = {"max_position_embeddings": max_positions or 2048}
    else:
        raise TypeError(f"source must be the teacher's config or tokenizer, got {type(source).__name__}")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} must be a multiple of heads={heads}")
    kv_heads = heads if kv_heads is None else kv_heads
    if heads % kv_heads:
        raise ValueError(f"heads={heads} must be a multiple of kv_heads={kv_heads}")
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, intermediate_size=intermediate or _default_intermediate(hidden),
                         tie_word_embeddings=True, **special, **extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.train()


