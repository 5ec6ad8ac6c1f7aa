"""``eval_mode``: a ``with`` block in which models are in eval mode, their modes restored after.

A leaf module (it imports nothing from ``course_lib``), so that every layer can use it;
``course_lib.models`` re-exports it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(*models: nn.Module | None) -> Iterator[None]:
    """Put ``models`` in eval mode for the ``with`` block, then give each back the mode it had
    (``model.train(was_training)``, also when the block raises). ``None`` entries are skipped."""
    models = tuple(m for m in models if m is not None)
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, was_training in zip(models, modes):
            m.train(was_training)
