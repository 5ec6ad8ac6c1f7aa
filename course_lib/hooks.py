"""Capture intermediate features by module path with forward hooks (the torchdistill way).

Never rewrite a model's ``forward`` to expose its features: register hooks on the submodules you
need, read ``capture.features[path]`` after a forward pass, and always remove the hooks
(``with FeatureCapture(model, ["conv2"]) as cap: ...`` or ``cap.close()``). Paths are the names of
``model.named_modules()``: ``"conv2"``, ``"features.7"``, ``"layer3"`` (torchvision ResNets),
``"features.9"`` (MobileNetV3); a misspelt one is an error that lists the closest names.

On a stacked model (``course_lib.stacking``) the same paths exist; a grouped convolution's output
is ``[B, N*C, H, W]``, which ``split_models`` turns into ``[N, B, C, H, W]``. A ``VmapStack`` cannot
be hooked: its submodules run inside ``torch.vmap`` on per-model tensors that must not be kept.

``cache_features(teacher, data, paths)`` runs a frozen teacher once and keeps its features as
tables (what feature losses read when the inputs are not augmented); ``resize`` brings a map to
another spatial size.
"""
from __future__ import annotations

import difflib

import torch.nn.functional as F

import torch
from torch import nn

from .data import TensorData
from .engine import freeze
from .stacking import VmapStack


class FeatureCapture:
    """Record what the submodules at ``paths`` output (or receive) on every forward pass.

    ``what="output"`` (default) stores each module's output; ``what="input"`` its first positional
    input (e.g. what a classifier head is given). ``detach=False`` (default) stores the live tensor,
    part of the autograd graph: what a feature loss needs. ``detach=True`` stores a detached *copy*,
    safe from later in-place operations (``ReLU(inplace=True)`` right after the hooked module would
    otherwise overwrite what was stored). A module called several times per forward keeps its last
    call's tensor. The captured value must be a tensor: a module returning a tuple (an LSTM, a
    multi-head attention layer) is an error; hook one of its submodules instead.
    """

    def __init__(self, model: nn.Module, paths: list[str] | str, *, detach: bool = False, what: str = "output"):
        if isinstance(model, VmapStack):
            raise TypeError("a VmapStack cannot be hooked (its layers run inside torch.vmap); train with "
                            "Execution(stack=False), or stack with method='grouped' where it exists")
        if what not in ("output", "input"):
            raise ValueError(f"what must be 'output' or 'input', got {what!r}")
        paths = [paths] if isinstance(paths, str) else list(paths)
        if not paths:
            raise ValueError("FeatureCapture needs at least one module path")
        modules = dict(model.named_modules())
        for p in paths:
            if p not in modules:
                raise KeyError(_unknown_path_message(p, model, [n for n in modules if n]))
        self.what, self.detach = what, detach
        self.features: dict[str, torch.Tensor] = {}
        self._handles = [modules[p].register_forward_hook(self._hook(p)) for p in paths]

    def _hook(self, path: str):
        def hook(module, inputs, output):
            value = output if self.what == "output" else (inputs[0] if inputs else None)
            if not torch.is_tensor(value):
                raise TypeError(f"module {path!r} ({type(module).__name__}) has a {type(value).__name__} as "
                                f"its {self.what}, not a tensor; capture one of its submodules"
                                + (" or use what='input'" if self.what == "output" else ""))
            self.features[path] = value.detach().clone() if self.detach else value
        return hook

    def close(self) -> None:
        """Remove every hook (the features of the last forward stay readable). Safe to call twice."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> FeatureCapture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _unknown_path_message(path: str, model: nn.Module, known: list[str]) -> str:
    close = difflib.get_close_matches(path, known, n=5, cutoff=0.5)
    where = f"no submodule {path!r} in {type(model).__name__}"
    if close:
        return f"{where}; closest matches: {close}"
    return f"{where}; known paths: {known[:20]}{' ...' if len(known) > 20 else ''}"


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """``[..., H, W]`` -> ``[..., h, w]``: average pooling to shrink, bilinear interpolation to grow."""
    size = tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    flat = x.reshape(-1, 1, *x.shape[-2:])
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        flat = F.adaptive_avg_pool2d(flat, size)
    else:
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return flat.reshape(*x.shape[:-2], *size)


@torch.no_grad()
def cache_features(teacher: nn.Module, data: TensorData | torch.Tensor, paths: list[str], *,
                   batch_size: int = 500, pool_to: int | None = None, dtype=torch.float32) -> dict:
    """Run a frozen copy of ``teacher`` once over ``data``: ``{path: [n, ...]}`` on the CPU.

    The tables a feature loss reads by row (``step.idx``) when the inputs are not augmented. Memory:
    n x C x H x W x 4 bytes (float32); for 10,000 images and TeacherCNN, ``features.3`` (32 x 14 x 14)
    takes 251 MB, ``features.7`` (64 x 7 x 7) 125 MB, ``features.11`` (128 x 3 x 3) 46 MB.
    ``pool_to``: average-pool maps larger than ``pool_to x pool_to`` down to it (``pool_to=7``
    quarters ``features.3``); ``dtype=torch.float16`` halves any table.
    """
    x = data.x if isinstance(data, TensorData) else data
    paths = [paths] if isinstance(paths, str) else list(paths)
    model = freeze(teacher)
    device = next(model.parameters()).device
    chunks: dict[str, list] = {p: [] for p in paths}
    with FeatureCapture(model, paths, detach=True) as cap:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(device))
            for p in paths:
                f = cap.features[p]
                if pool_to is not None and f.dim() == 4:
                    f = resize(f, [min(pool_to, s) for s in f.shape[-2:]])
                chunks[p].append(f.to("cpu", dtype))
    return {p: torch.cat(c) for p, c in chunks.items()}
