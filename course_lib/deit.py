"""DeiT: a vision transformer student with a real distillation token (Touvron et al. 2021).

``DeiT`` extends ``vit.ViT`` by one token and one head. The distillation token is a learned
vector **concatenated to the sequence after the class token**, with **its own position embedding**;
it attends to the patches and to the class token like any other token, and its final state feeds its
own head. So the model returns two logits tensors: the class head (trained on the labels) and the
distillation head (trained on the teacher). At inference DeiT's code averages the two heads' logits
(the paper's text adds their softmax outputs); ``engine.prediction`` averages the logits of a model's
tuple of outputs, as the code does.

The source article's wrapper (``ArticleDistilledViT``, kept for the lesson) creates a distillation
token but never puts it into the sequence and reads ``features[:, 1]``: that is the first *patch*
token, and its "distillation token" receives no gradient at all.

Losses (``deit_loss``), with the class head's cross-entropy weighted ``1 - alpha``:

* hard-label distillation (better than soft in DeiT's ImageNet experiments):
  ``(1 - alpha) CE(z_cls, y) + alpha CE(z_dist, argmax z_t)`` (the paper uses alpha = 1/2);
* soft distillation: ``(1 - alpha) CE(z_cls, y) + alpha tau^2 KL(softmax(z_t/tau) || softmax(z_dist/tau))``
  (the paper's soft runs: alpha, its lambda, = 0.1 and tau = 3).

``deit_objective(hard=...)`` wraps it for ``engine.fit``: each run's ``alpha`` and ``temperature``
(tau) come from its ``RunSpec``; the teacher's targets are the cached logits of that run.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .losses import soft_target_kl
from .modes import eval_mode
from .validation import check_fraction, check_logits, check_targets, check_temperature
from .vit import ViT


class DeiT(ViT):
    """``ViT`` + a distillation token (after the class token, own position embedding, own head).

    ``forward`` returns ``(class_logits, distillation_logits)`` in training and evaluation alike;
    the prediction is their mean (``engine.prediction``), as in DeiT.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dim = self.cls_token.shape[-1]
        self.dist_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        # one more position: [class, distillation, patches...]
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, self.pos_embed.shape[1] + 1, dim))
        self.head_dist = nn.Linear(dim, self.head.out_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> tokens ``[B, 2 + patches, dim]``: class token, distillation token, patches."""
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(len(x), -1, -1)
        dist = self.dist_token.expand(len(x), -1, -1)
        return torch.cat([cls, dist, patches], dim=1) + self.pos_embed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm(self.blocks(self.embed(x)))
        return self.head(h[:, 0]), self.head_dist(h[:, 1])


class ArticleDistilledViT(ViT):
    """The source article's wrapper, kept to show its mistake: do not use.

    It creates a distillation token and a head, but the token never enters the sequence; the
    "distillation" features are ``h[:, 1]``, the first patch token.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dim = self.cls_token.shape[-1]
        self.dist_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))   # created ... and never used
        self.head_dist = nn.Linear(dim, self.head.out_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm(self.blocks(self.embed(x)))                       # [class, patches...]
        return self.head(h[:, 0]), self.head_dist(h[:, 1])              # h[:, 1] is a patch token


def deit_loss(class_logits: torch.Tensor, dist_logits: torch.Tensor, targets: torch.Tensor,
              teacher_logits: torch.Tensor, *, alpha=0.5, temperature=1.0, hard=True,
              validate: bool = True) -> torch.Tensor:
    """Per-example DeiT loss ``(1 - alpha) CE(class head, labels) + alpha * distillation(dist head)``.

    ``hard=True``: distillation = CE(dist head, argmax of the teacher); else ``tau^2`` times
    KL(teacher || dist head) at temperature ``tau``. Logits ``[..., C]``, targets ``[...]``;
    ``alpha``/``temperature`` floats or tensors broadcasting against ``[...]`` (e.g. ``[N, 1]``);
    ``hard`` a bool or a bool tensor broadcasting the same way (one choice per stacked run).
    ``validate=False`` skips the checks that read values (NaN, target range, alpha, temperature),
    which wait for a GPU: ``DeiTObjective`` checks its settings once and passes it.
    """
    for name, z in (("class_logits", class_logits), ("dist_logits", dist_logits), ("teacher_logits", teacher_logits)):
        check_logits(name, z, finite=False)
    if class_logits.shape != dist_logits.shape or class_logits.shape != teacher_logits.shape:
        raise ValueError(f"class, distillation and teacher logits must share a shape: {tuple(class_logits.shape)}, "
                         f"{tuple(dist_logits.shape)}, {tuple(teacher_logits.shape)}")
    if targets.shape != class_logits.shape[:-1]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match logits {tuple(class_logits.shape)}")
    if not (isinstance(hard, bool) or (torch.is_tensor(hard) and hard.dtype == torch.bool)):
        raise TypeError(f"hard must be a bool or a bool tensor (one choice per stacked run), got {hard!r}")
    if validate:
        for name, z in (("class_logits", class_logits), ("dist_logits", dist_logits),
                        ("teacher_logits", teacher_logits)):
            check_logits(name, z)
        check_targets("targets", targets, classes=class_logits.shape[-1])
        check_fraction("alpha", alpha, meaning="the weight of the distillation head's term")
        check_temperature(temperature)
    ce = F.cross_entropy(class_logits.flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)
    teacher = teacher_logits.detach()

    def hard_term():
        return F.cross_entropy(dist_logits.flatten(0, -2), teacher.argmax(-1).flatten(),
                               reduction="none").view(targets.shape)

    def soft_term():
        t = temperature.to(dist_logits) if torch.is_tensor(temperature) else float(temperature)
        return t * t * soft_target_kl(dist_logits, teacher, t, validate=False)

    if torch.is_tensor(hard):
        distill = torch.where(hard.to(ce.device), hard_term(), soft_term())
    else:
        distill = hard_term() if hard else soft_term()
    a = alpha.to(ce) if torch.is_tensor(alpha) else alpha
    return (1 - a) * ce + a * distill


class DeiTObjective(nn.Module):
    """``fit`` objective for two-head models: ``deit_loss`` per run, with its alpha, tau and hard/soft."""

    def __init__(self, ctx, *, hard):
        super().__init__()
        bad = [s for s in ctx.specs if not 0 <= s.alpha <= 1 or s.temperature <= 0]
        if bad:
            raise ValueError(f"DeiT runs need 0 <= alpha <= 1 and temperature > 0, got {bad}")
        choice = [bool(hard(s)) if callable(hard) else bool(hard) for s in ctx.specs]
        self.hard = choice[0] if len(set(choice)) == 1 else None
        self.register_buffer("hard_mask", torch.tensor([[c] for c in choice], device=ctx.device))
        self.register_buffer("alpha", torch.tensor([[s.alpha] for s in ctx.specs], device=ctx.device))
        self.register_buffer("temperature", torch.tensor([[s.temperature] for s in ctx.specs], device=ctx.device))

    def forward(self, step):
        class_logits, dist_logits = step.outputs
        if step.teacher_logits is None:
            raise ValueError("DeiT distillation needs teacher targets: pass teacher_logits (or teacher) to fit")
        loss = deit_loss(class_logits, dist_logits, step.y, step.teacher_logits, alpha=self.alpha,
                         temperature=self.temperature, hard=self.hard if self.hard is not None else self.hard_mask,
                         validate=False)
        ce = F.cross_entropy(class_logits.flatten(0, 1), step.y.flatten(), reduction="none").view(step.y.shape)
        return loss.mean(1), {"ce_class_head": ce.detach().mean(1)}


def deit_objective(*, hard=True):
    """``objective`` factory for ``fit``: DeiT's hard-label (default) or soft distillation.

    ``hard`` is a bool for every run, or a function of the ``RunSpec`` (e.g.
    ``lambda spec: spec.name == "DeiT hard"``), so hard and soft runs can train in one stack.
    """
    return partial(DeiTObjective, hard=hard)


@torch.no_grad()
def token_attention(model: ViT, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Attention of every token in block ``layer`` of a ``ViT``/``DeiT``, averaged over the heads.

    Returns ``[B, T, T]`` (rows: the attending token, summing to 1): for a ``DeiT``, row 0 is the
    class token and row 1 the distillation token; ``[:, i, 2:]`` is what token ``i`` reads from the
    patches (reshape to the patch grid to draw it). Recomputes the block's queries and keys from its
    input, so the model needs no hooks and no change.
    """
    with eval_mode(model):
        blocks = list(model.blocks)
        layer = layer % len(blocks)
        h = model.embed(x)
        for block in blocks[:layer]:
            h = block(h)
        attn = blocks[layer].attn
        b, t, d = h.shape
        q, k, _ = attn.qkv(blocks[layer].norm1(h)).view(b, t, 3, attn.heads, d // attn.heads).permute(2, 0, 3, 1, 4)
        weights = ((q @ k.transpose(-2, -1)) * (d // attn.heads) ** -0.5).softmax(-1)   # [B, heads, T, T]
    return weights.mean(1)
