"""KV caches for the generators: a fresh cache for a model, cropping it back after rejected drafts,
and a model wrapper that feeds only the new tokens (see :mod:`course_lib.llm.speculative`)."""
from __future__ import annotations

import inspect

import torch
from torch import nn

__all__ = ["new_cache", "cache_keyword", "crop_cache"]


def new_cache(model: nn.Module):
    """An empty ``transformers.DynamicCache`` for ``model``."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:                    # transformers before 4.56: no config argument
        return DynamicCache()


def cache_keyword(model: nn.Module) -> str:
    """The name of ``model.forward``'s cache argument: ``"cache"`` (transformers 5.x) or
    ``"past_key_values"`` (4.x; in 5.x a deprecated alias that warns)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def crop_cache(cache, length: int) -> None:
    """Keep the first ``length`` positions of ``cache`` (no-op if it holds no more than that).

    Calls ``cache.crop(-n)`` to remove the last ``n`` positions: the one form that means the same in
    transformers 4.x (where ``crop(n)`` keeps ``n``) and 5.x (where a positive argument raises)."""
    if length < 0:
        raise ValueError(f"cannot crop a cache to {length} positions")
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


class _CachedModel:
    """A causal LM with its KV cache: feed the whole sequence, it runs only the tokens it has not
    seen. Without a cache (``use_cache=False``) it runs the whole sequence every time."""

    def __init__(self, model: nn.Module, use_cache: bool):
        self.model = model
        self.cache = new_cache(model) if use_cache else None
        self.keyword = cache_keyword(model)
        self.takes_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.calls = 0

    @property
    def seen(self) -> int:
        return self.cache.get_seq_length() if self.cache is not None else 0

    def logits(self, tokens: torch.Tensor, last: int) -> torch.Tensor:
        """Float logits ``[last, V]`` predicting the token after each of the ``last`` final
        positions of ``tokens`` ``[1, n]``."""
        new = tokens[:, self.seen:]
        if new.shape[1] < last:
            raise RuntimeError(f"asked for {last} logits but only {new.shape[1]} tokens are new "
                               f"(the cache holds {self.seen} of {tokens.shape[1]})")
        kwargs = {"use_cache": self.cache is not None}
        if self.cache is not None:
            kwargs[self.keyword] = self.cache
        if self.takes_logits_to_keep:      # skip the vocabulary projection of positions not needed
            kwargs["logits_to_keep"] = last
        self.calls += 1
        return self.model(input_ids=new, **kwargs).logits[0, -last:].float()

    def rewind(self, length: int) -> None:
        """Forget every cached position from ``length`` on (rejected drafts)."""
        if self.cache is not None:
            crop_cache(self.cache, length)


