"""Capture intermediate features by module path with forward hooks (the torchdistill way).

Never rewrite a model's ``forward`` to expose its features: register hooks on the submodules you
need, read ``capture.features[path]`` after a forward pass, and always remove the hooks
(``with FeatureCapture(model, ["conv2"]) as cap: ...`` or ``cap.close()``).

On a stacked model (``course_lib.stacking``) the same paths exist; a grouped convolution's output
is ``[B, N*C, H, W]``, which ``split_models`` turns into ``[N, B, C, H, W]``.
"""
from __future__ import annotations

from torch import nn


class FeatureCapture:
    def __init__(self, model: nn.Module, paths: list[str], detach: bool = False):
        modules = dict(model.named_modules())
        missing = [p for p in paths if p not in modules]
        if missing:
            known = [n for n in modules if n][:20]
            raise KeyError(f"no submodule {missing} in {type(model).__name__}; known paths: {known}")
        self.features: dict = {}
        self._handles = [modules[p].register_forward_hook(self._hook(p, detach)) for p in paths]

    def _hook(self, path: str, detach: bool):
        def hook(module, inputs, output):
            self.features[path] = output.detach() if detach else output
        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
