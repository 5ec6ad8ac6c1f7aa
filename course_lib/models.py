"""Teachers and students for the image notebooks.

``TeacherCNN``: three conv-BN-ReLU-maxpool blocks (32, 64, 128 channels, convolutions without bias
because BatchNorm follows), then a 256-unit hidden layer with dropout 0.3. On 1x28x28 inputs and
10 classes it has 390,634 parameters.

``StudentCNN``: two stride-2 convolutions and a linear layer, no BatchNorm (so several students can
be trained in one vectorised pass, see ``course_lib.stacking``). With the default widths (16, 32)
it has 20,490 parameters on Fashion-MNIST; widths (8, 16) give a 9,098-parameter student.

``ViT``: a small vision transformer in the spirit of nanoGPT - 4x4 patches embedded by a strided
convolution, a class token, learned position embeddings, pre-norm blocks (hand-written multi-head
self-attention, GELU MLP), and a linear head on the class token. No BatchNorm, no dropout. With the
defaults (dim 64, depth 4, 4 heads, MLP ratio 2) it has 138,250 parameters on Fashion-MNIST.
"""
from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class TeacherCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 widths: tuple[int, ...] = (32, 64, 128), hidden: int = 256, dropout: float = 0.3):
        super().__init__()
        layers, c, size = [], in_channels, image_size
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c, size = w, size // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class StudentCNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 widths: tuple[int, int] = (16, 32)):
        super().__init__()
        w1, w2 = widths
        self.conv1 = nn.Conv2d(in_channels, w1, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        size = (image_size + 1) // 2
        size = (size + 1) // 2
        self.fc = nn.Linear(w2 * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


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


def resnet18_small_images(in_channels: int = 3, num_classes: int = 100) -> nn.Module:
    """torchvision's ResNet-18 for 32x32 images (the CIFAR stem of BAN/DML-era code): a 3x3 stride-1
    first convolution and no max-pooling, so the last stage still sees 4x4 features."""
    import torchvision
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(name: str, data=None, **kwargs) -> nn.Module:
    """Build ``"teacher"``, ``"student_cnn"``, ``"vit"``, ``"deit"`` or ``"resnet18"`` for a dataset.

    ``data`` is a ``TensorData`` (its image shape and class count size the model).
    """
    c, h = (data.x.shape[1], data.x.shape[-1]) if data is not None else (1, 28)
    k = data.num_classes if data is not None else 10
    if name == "teacher":
        return TeacherCNN(c, k, h, **kwargs)
    if name == "student_cnn":
        return StudentCNN(c, k, h, **kwargs)
    if name == "vit":
        return ViT(c, k, h, **kwargs)
    if name == "resnet18":
        return resnet18_small_images(c, k)
    if name == "deit":
        from .deit import DeiT          # deit imports this module
        return DeiT(c, k, h, **kwargs)
    raise ValueError(f"unknown model {name!r}; expected teacher, student_cnn, vit, deit or resnet18")
