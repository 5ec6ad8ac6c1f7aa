"""A small vision transformer in the spirit of nanoGPT.

``ViT``: 4x4 patches embedded by a strided convolution, a class token, learned position embeddings,
pre-norm blocks (hand-written multi-head self-attention, GELU MLP), and a linear head on the class
token. No BatchNorm, no dropout. With the defaults (dim 64, depth 4, 4 heads, MLP ratio 2) it has
138,250 parameters on Fashion-MNIST. ``course_lib.deit.DeiT`` extends it by a distillation token.

Imports nothing from ``course_lib``; ``course_lib.models`` re-exports ``ViT``, ``SelfAttention``
and ``Block``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SelfAttention", "Block", "ViT"]


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``[B, T, dim]`` tokens (every token sees every token)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        # queries, keys and values of all heads at once; no bias: a key bias cannot change the
        # softmax (its gradient is zero, and AdamW would amplify the rounding noise), and a value
        # bias is the same as a bias of ``proj`` (attention weights sum to 1)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5   # [B, heads, T, T]
        y = att.softmax(dim=-1) @ v                                     # [B, heads, T, d/heads]
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 patch_size: int = 4, dim: int = 64, depth: int = 4, heads: int = 4, mlp_ratio: int = 2):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        num_patches = (image_size // patch_size) ** 2
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + num_patches, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> tokens ``[B, 1 + patches, dim]`` (class token first)."""
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)   # [B, patches, dim]
        cls = self.cls_token.expand(len(x), -1, -1)
        return torch.cat([cls, patches], dim=1) + self.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.blocks(self.embed(x)))
        return self.head(h[:, 0])
