"""Datasets as in-memory tensors.

Small vision datasets fit in memory, and indexing a tensor with a batch of indices is far cheaper
than a ``DataLoader`` that collates one sample at a time, so the engine works on ``(images,
labels)`` tensors. Sources, in order:

1. an explicit ``root`` (or ``$FASHION_MNIST_DIR``) holding the four IDX ``.gz`` files;
2. the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), which
   ``make setup`` installs;
3. torchvision's own download into :func:`course_lib.paths.downloads_dir`, only if the profile
   allows downloads (full profile / Colab).

Anything else is a ``FileNotFoundError`` naming the command that installs the data.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import paths

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Mean/std of the Fashion-MNIST training images (pixel values in [0, 1]).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
INSTALL_HINT = ("install it with `make setup` (Debian: `apt-get install dataset-fashion-mnist`), "
                "pass root=<folder with the four IDX .gz files>, or set FASHION_MNIST_DIR")


@dataclass
class TensorData:
    """Images ``x`` (float, normalised, N x C x H x W), labels ``y`` (int64) and class names."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    name: str = ""

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} images but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, size: int | None, seed: int = 0) -> TensorData:
        """A class-balanced random subset of ``size`` examples (all of them if ``size`` is None)."""
        if size is None or size >= len(self):
            return self
        return self.select(self.subset_rows(size, seed), f"{self.name}[{size}]")

    def subset_rows(self, size: int | None, seed: int = 0) -> torch.Tensor:
        """The sorted row numbers of ``subset(size, seed)``."""
        if size is None or size >= len(self):
            return torch.arange(len(self))
        if size <= 0:
            raise ValueError(f"subset size must be positive, got {size}")
        g = torch.Generator().manual_seed(seed)
        per_class = [torch.nonzero(self.y == c).flatten() for c in range(self.num_classes)]
        per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
        quota = size // self.num_classes
        chosen = [idx[:quota] for idx in per_class]
        rest = torch.cat([idx[quota:] for idx in per_class])
        extra = size - sum(len(c) for c in chosen)
        chosen.append(rest[torch.randperm(len(rest), generator=g)[:extra]])
        return torch.cat(chosen).sort().values

    def outside_subset(self, size: int | None, seed: int = 0) -> TensorData:
        """The rows that ``subset(size, seed)`` leaves out, in their order (e.g. the teacher's training
        images that the students never saw: a transfer set)."""
        out = torch.ones(len(self), dtype=torch.bool)
        out[self.subset_rows(size, seed)] = False
        return self.select(torch.nonzero(out).flatten(), f"{self.name}[not {size}]")

    def select(self, rows: torch.Tensor, name: str | None = None) -> TensorData:
        """The rows ``rows`` (indices) as a new dataset."""
        return TensorData(self.x[rows], self.y[rows], self.classes, name or self.name)

    @staticmethod
    def concat(parts: list[TensorData], name: str | None = None) -> TensorData:
        """The rows of ``parts``, one after the other (same classes and image shape)."""
        if not parts or any(p.classes != parts[0].classes or p.x.shape[1:] != parts[0].x.shape[1:] for p in parts):
            raise ValueError("concat needs at least one dataset, all with the same classes and image shape")
        return TensorData(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), parts[0].classes,
                          name or " + ".join(p.name for p in parts))


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or plain): magic, dimension sizes, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path | None:
    """The first folder that holds all four Fashion-MNIST files, or None."""
    candidates = [root, os.environ.get("FASHION_MNIST_DIR"), DEBIAN_FASHION_MNIST]
    for c in candidates:
        if not c:
            continue
        c = Path(c)
        for folder in (c, c / "FashionMNIST" / "raw", c / "raw"):
            if all((folder / f).exists() for pair in FASHION_MNIST_FILES.values() for f in pair):
                return folder
    return None


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None,
                       allow_download: bool = False, normalize: bool = True) -> TensorData:
    """Fashion-MNIST ``split`` ("train": 60,000, "test": 10,000) as 1x28x28 float tensors."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = find_fashion_mnist(root)
    if folder is None and allow_download:
        import torchvision  # the standard download, only where the network exists
        dl_root = Path(root or paths.downloads_dir())
        torchvision.datasets.FashionMNIST(str(dl_root), train=split == "train", download=True)
        folder = find_fashion_mnist(dl_root)
    if folder is None:
        raise FileNotFoundError(f"Fashion-MNIST not found; {INSTALL_HINT}")
    img_file, lbl_file = FASHION_MNIST_FILES[split]
    images = torch.from_numpy(_read_idx(folder / img_file).copy()).float().div_(255).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(folder / lbl_file).astype(np.int64))
    if normalize:
        images = (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    return TensorData(images, labels, FASHION_MNIST_CLASSES, f"fashion_mnist/{split}")


CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def load_cifar100(split: str = "train", root: str | os.PathLike | None = None,
                  allow_download: bool = True) -> TensorData:
    """CIFAR-100 through torchvision (full profile), as normalised 3x32x32 tensors."""
    import torchvision
    root = Path(root or os.environ.get("CIFAR100_DIR") or paths.downloads_dir())
    try:
        ds = torchvision.datasets.CIFAR100(str(root), train=split == "train", download=allow_download)
    except RuntimeError as e:
        raise FileNotFoundError(f"CIFAR-100 not found under {root} and downloads are off: {e}") from e
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)
    return TensorData((x - mean) / std, torch.tensor(ds.targets), tuple(ds.classes), f"cifar100/{split}")


def load_vision(dataset: str, split: str, *, allow_download: bool = False,
                root: str | os.PathLike | None = None) -> TensorData:
    """Dispatch on the profile's dataset name."""
    if dataset == "fashion_mnist":
        return load_fashion_mnist(split, root=root, allow_download=allow_download)
    if dataset == "cifar100":
        return load_cifar100(split, root=root, allow_download=allow_download)
    raise ValueError(f"unknown dataset {dataset!r}; expected 'fashion_mnist' or 'cifar100'")


def profile_data(profile, seed: int = 0) -> tuple[TensorData, TensorData]:
    """(train subset, test split) at the sizes the profile sets."""
    v = profile.vision
    allow = profile.allow_download or os.environ.get("COURSE_ALLOW_DOWNLOAD") == "1"  # set on Colab
    train = load_vision(v.dataset, "train", allow_download=allow).subset(v.train_size, seed)
    test = load_vision(v.dataset, "test", allow_download=allow).subset(v.test_size, seed)
    return train, test


# Which classes belong together, for checking what a teacher's soft targets say (notebook 01).
# Fashion-MNIST has no official grouping; these two groups are the obvious ones. CIFAR-100's are
# its 20 official superclasses (Krizhevsky 2009), spelt as torchvision's fine class names.
CLASS_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "fashion_mnist": {
        "upper-body garments": ("T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"),
        "footwear": ("Sandal", "Sneaker", "Ankle boot"),
        "trousers": ("Trouser",),
        "bags": ("Bag",),
    },
    "cifar100": {
        "aquatic mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
        "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
        "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
        "food containers": ("bottle", "bowl", "can", "cup", "plate"),
        "fruit and vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
        "household electrical devices": ("clock", "keyboard", "lamp", "telephone", "television"),
        "household furniture": ("bed", "chair", "couch", "table", "wardrobe"),
        "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
        "large carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
        "large man-made outdoor things": ("bridge", "castle", "house", "road", "skyscraper"),
        "large natural outdoor scenes": ("cloud", "forest", "mountain", "plain", "sea"),
        "large omnivores and herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
        "medium-sized mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
        "non-insect invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
        "people": ("baby", "boy", "girl", "man", "woman"),
        "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
        "small mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
        "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
        "vehicles 1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
        "vehicles 2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
    },
}
# The class notebook 01 shows at five temperatures: one with near neighbours in its group.
EXAMPLE_CLASS = {"fashion_mnist": "Shirt", "cifar100": "maple_tree"}


def class_groups(dataset: str) -> dict[str, tuple[str, ...]]:
    """The groups of similar classes of ``dataset`` ("fashion_mnist" or "cifar100"); every class
    belongs to exactly one group."""
    if dataset not in CLASS_GROUPS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(CLASS_GROUPS)}")
    return CLASS_GROUPS[dataset]


def group_of(dataset: str) -> dict[str, str]:
    """Class name -> the name of its group in ``class_groups(dataset)``."""
    return {c: g for g, members in class_groups(dataset).items() for c in members}


def random_shift_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                      max_shift: int = 2, flip: bool = True, fill: float | None = None) -> torch.Tensor:
    """Augment a batch of normalised images: a random translation by up to ``max_shift`` pixels
    (the uncovered border filled with the background) and horizontal flips.

    ``fill`` is the value of the uncovered pixels; ``None`` takes each channel's minimum over the
    batch, which for images normalised from [0, 1] pixels is the normalised value of black: exactly
    Fashion-MNIST's background (-0.81 after normalisation; padding with 0 would be grey, a value no
    real image has), and black, as torchvision's ``RandomCrop(padding=...)`` pads raw pixels, for
    CIFAR-100 batches that contain a black pixel per channel.
    """
    n = x.shape[0]
    if fill is None:
        background = x.amin(dim=(0, *range(2, x.dim())), keepdim=True)[0]          # [C, 1, 1]
    else:
        background = torch.full((x.shape[1], 1, 1), float(fill), dtype=x.dtype)
    h, w = x.shape[-2:]
    padded = background.expand(n, x.shape[1], h + 2 * max_shift, w + 2 * max_shift).clone()
    padded[..., max_shift:max_shift + h, max_shift:max_shift + w] = x
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # n x h
    cols = (dx[:, None] + torch.arange(w)[None, :])  # n x w
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        out[mask] = out[mask].flip(-1)
    return out


# Augmentations by name (what a teacher's cache key and a notebook's settings refer to).
AUGMENTATIONS = {"shift_flip": random_shift_flip}


def get_augmentation(name: str):
    """The augmentation called ``name`` (a function ``(x, generator) -> x``)."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {sorted(AUGMENTATIONS)}")
    return AUGMENTATIONS[name]


def augmented_views(data: TensorData, views: int, augment=random_shift_flip, seed: int = 0) -> TensorData:
    """``views`` random augmented copies of every image, as one dataset of ``views * len(data)`` rows.

    Row ``v * len(data) + i`` is view ``v`` of image ``i``. A fixed set of views lets a teacher's
    predictions on them be computed once and cached (``engine.cache_logits``), so distilling on
    augmented images costs no teacher forward per step; training on the views for ``E`` epochs
    shows each image ``views * E`` times, each time one of its ``views`` fixed augmentations.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([augment(data.x, g) for _ in range(views)])
    return TensorData(x, data.y.repeat(views), data.classes, f"{data.name} x{views} views")
