"""Teachers and students for the image notebooks.

``TeacherCNN``: three conv-BN-ReLU-maxpool blocks (32, 64, 128 channels, convolutions without bias
because BatchNorm follows), then a 256-unit hidden layer with dropout 0.3. On 1x28x28 inputs and
10 classes it has 390,634 parameters.

``StudentCNN``: two stride-2 convolutions and a linear layer, no BatchNorm (so several students can
be trained in one vectorised pass, see ``course_lib.stacking``). With the default widths (16, 32)
it has 20,490 parameters on Fashion-MNIST; widths (8, 16) give a 9,098-parameter student.

``ViT`` (and its ``SelfAttention`` and ``Block``) lives in ``course_lib.vit``, ``DeiT`` in
``course_lib.deit``; both are importable from here too, and ``build_model`` builds them by name.
"""
from __future__ import annotations

import torch
from torch import nn

from .deit import DeiT
from .modes import eval_mode  # noqa: F401 (re-exported)
from .vit import Block, SelfAttention, ViT  # noqa: F401 (Block, SelfAttention: re-exported)


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
        return DeiT(c, k, h, **kwargs)
    raise ValueError(f"unknown model {name!r}; expected teacher, student_cnn, vit, deit or resnet18")
