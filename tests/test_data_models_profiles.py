import gzip
import os

import numpy as np
import pytest
import torch

from course_lib import data as data_mod
from course_lib.data import TensorData, find_fashion_mnist, load_fashion_mnist, random_shift_flip
from course_lib.models import StudentCNN, TeacherCNN, ViT, build_model, count_parameters
from course_lib.profiles import configure_threads, environment_report, get_device, get_profile


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_root(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20)):
        img, lbl = data_mod.FASHION_MNIST_FILES[split]
        write_idx(tmp_path / img, rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / lbl, np.arange(n) % 10)
    return tmp_path


def test_idx_reader_and_normalisation(fake_root):
    d = load_fashion_mnist("train", root=fake_root)
    assert d.x.shape == (40, 1, 28, 28) and d.y.dtype == torch.int64 and len(d) == 40
    raw = load_fashion_mnist("test", root=fake_root, normalize=False)
    assert raw.x.min() >= 0 and raw.x.max() <= 1
    assert d.classes[6] == "Shirt" and d.num_classes == 10


def test_missing_data_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "DEBIAN_FASHION_MNIST", tmp_path / "nothing")
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    assert find_fashion_mnist(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation", root=tmp_path)


def test_corrupt_idx_is_rejected(tmp_path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 0x0D, 1]) + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="unsigned-byte"):
        data_mod._read_idx(p)


def test_subset_is_balanced_seeded_and_validated():
    y = torch.arange(1000) % 10
    d = TensorData(torch.randn(1000, 1, 2, 2), y, tuple("abcdefghij"))
    s1, s2, s3 = d.subset(205, seed=0), d.subset(205, seed=0), d.subset(205, seed=1)
    assert len(s1) == 205 and torch.equal(s1.y, s2.y) and not torch.equal(s1.x, s3.x)
    counts = torch.bincount(s1.y, minlength=10)
    assert counts.min() >= 20
    assert d.subset(None) is d and d.subset(5000) is d
    with pytest.raises(ValueError):
        d.subset(0)
    with pytest.raises(ValueError, match="labels"):
        TensorData(torch.zeros(3, 1), torch.zeros(2), ("a",))


@pytest.mark.skipif(find_fashion_mnist() is None, reason="Fashion-MNIST not installed (make setup)")
def test_outside_subset_is_the_complement_and_concat_keeps_rows():
    x = torch.arange(60, dtype=torch.float).view(60, 1, 1, 1)
    data = TensorData(x, torch.arange(60) % 3, ("a", "b", "c"), "toy")
    inside, outside = data.subset(21, seed=4), data.outside_subset(21, seed=4)
    assert torch.equal(inside.x, data.x[data.subset_rows(21, seed=4)])
    seen = torch.cat([inside.x.flatten(), outside.x.flatten()]).sort().values
    assert torch.equal(seen, x.flatten()) and len(outside) == 39                 # disjoint, and all rows
    both = TensorData.concat([inside, outside])
    assert torch.equal(both.x[:21], inside.x) and torch.equal(both.y[21:], outside.y)
    assert len(data.outside_subset(None)) == 0 and torch.equal(data.subset(None).x, x)
    with pytest.raises(ValueError, match="same classes"):
        TensorData.concat([inside, TensorData(x, torch.zeros(60, dtype=torch.long), ("a", "b"), "other")])
    with pytest.raises(ValueError, match="at least one"):
        TensorData.concat([])


def test_real_fashion_mnist_is_there():
    test = load_fashion_mnist("test")
    assert len(test) == 10_000 and torch.bincount(test.y).tolist() == [1000] * 10
    assert abs(test.x.mean().item()) < 0.05  # normalised with the training mean


def test_shift_flip_keeps_shape_and_content():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float).view(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = random_shift_flip(x, g, max_shift=1)
    assert out.shape == x.shape
    none = random_shift_flip(x, g, max_shift=0, flip=False)
    assert torch.equal(none, x)


def test_shift_pads_with_the_background_not_grey():
    """Fashion-MNIST's background is raw 0, i.e. the normalised minimum (-0.81): the uncovered border
    of a shifted image must hold that value, never 0 (grey after normalisation)."""
    images = load_fashion_mnist("test").x[:256]
    background = images.min().item()
    assert background < -0.5 and (images == 0).float().mean().item() == 0.0
    g = torch.Generator().manual_seed(0)
    out = random_shift_flip(images, g, max_shift=2)
    assert (out == 0).float().mean().item() == 0.0                       # no grey pixel appears
    # every image was shifted by dx, dy in [-2, 2]: its uncovered pixels are background, so the
    # share of background pixels can only grow, and it does (most shifts are not zero)
    grew = (out == background).flatten(1).float().mean(1) - (images == background).flatten(1).float().mean(1)
    assert (grew >= -1e-9).all() and (grew > 0).float().mean() > 0.5
    # a hand-made batch: the padding takes each channel's minimum, or the value asked for
    x = torch.stack([torch.full((2, 4, 4), 5.0), torch.full((2, 4, 4), 7.0)])
    x[:, 1] -= 10.0                                                        # channel 1 is darker
    shifted = random_shift_flip(x, torch.Generator().manual_seed(1), max_shift=4, flip=False)
    assert set(shifted[:, 0].unique().tolist()) <= {5.0, 7.0} and set(shifted[:, 1].unique().tolist()) <= {-5.0, -3.0}
    filled = random_shift_flip(x, torch.Generator().manual_seed(1), max_shift=4, flip=False, fill=-1.0)
    assert set(filled.unique().tolist()) <= {5.0, 7.0, -5.0, -3.0, -1.0} and (filled == -1.0).any()


def test_parameter_counts_match_the_calibration():
    assert count_parameters(TeacherCNN()) == 390_634
    assert count_parameters(StudentCNN()) == 20_490
    assert count_parameters(StudentCNN(widths=(8, 16))) == 9_098
    cifar = build_model("teacher", TensorData(torch.zeros(2, 3, 32, 32), torch.zeros(2), tuple(range(100))))
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet9000")
    for removed in ("mlp", "student_cnn_small"):
        with pytest.raises(ValueError, match="unknown model"):
            build_model(removed)


def vit_parameters(c, classes, image, patch, dim, depth, mlp_ratio):
    """ViT parameter count by formula: weights + biases of each layer, LayerNorm = 2 * dim."""
    tokens = 1 + (image // patch) ** 2
    embed = c * patch * patch * dim + dim + dim + tokens * dim        # patch conv, class token, positions
    attn = dim * 3 * dim + dim * dim + dim                            # qkv (no bias), output projection
    mlp = dim * mlp_ratio * dim + mlp_ratio * dim + mlp_ratio * dim * dim + dim
    block = 2 * (2 * dim) + attn + mlp
    return embed + depth * block + 2 * dim + dim * classes + classes  # final norm, head


def test_vit_parameters_and_shapes():
    vit = build_model("vit")
    assert isinstance(vit, ViT) and count_parameters(vit) == vit_parameters(1, 10, 28, 4, 64, 4, 2) == 138_250
    assert vit(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert vit.embed(torch.zeros(5, 1, 28, 28)).shape == (5, 1 + 49, 64)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in vit.modules())
    cifar = TensorData(torch.zeros(2, 3, 32, 32), torch.zeros(2), tuple(range(100)))
    big = build_model("vit", cifar, dim=48, depth=2, heads=3, mlp_ratio=4)
    assert count_parameters(big) == vit_parameters(3, 100, 32, 4, 48, 2, 4)
    assert big(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="divisible"):
        ViT(dim=30, heads=4)


def test_profiles_and_environment(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert get_profile().name == "quick"
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert get_profile().name == "full" and get_profile().vision.dataset == "cifar100"
    assert get_profile("QUICK").name == "quick"
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("medium")
    quick = get_profile("quick")
    assert quick.replace_vision(train_size=5).vision.train_size == 5 and quick.vision.train_size == 10_000
    assert get_device("cpu").type == "cpu" and get_device().type in ("cpu", "cuda", "mps")
    assert configure_threads() >= 1 and os.environ["OMP_WAIT_POLICY"]
    line = environment_report(quick)
    assert "profile=quick" in line and "torch=" in line and "torchvision=" in line and "transformers=" in line


# The 100 fine classes of CIFAR-100 in the order of the dataset's meta file ("fine_label_names"),
# which is also torchvision's ``CIFAR100.classes``.
CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm").split()


def test_class_groups_cover_each_class_once():
    from course_lib.data import CLASS_GROUPS, EXAMPLE_CLASS, FASHION_MNIST_CLASSES, class_groups, group_of
    cifar = class_groups("cifar100")
    assert len(cifar) == 20 and all(len(m) == 5 for m in cifar.values())
    assert sorted(c for m in cifar.values() for c in m) == sorted(CIFAR100_FINE) and len(CIFAR100_FINE) == 100
    fashion = group_of("fashion_mnist")
    assert sorted(fashion) == sorted(FASHION_MNIST_CLASSES)
    assert fashion["Shirt"] == fashion["Coat"] != fashion["Sneaker"] == fashion["Ankle boot"]
    assert group_of("cifar100")["oak_tree"] == group_of("cifar100")["maple_tree"] == "trees"
    for name in CLASS_GROUPS:
        assert EXAMPLE_CLASS[name] in group_of(name)
    with pytest.raises(ValueError, match="unknown dataset"):
        class_groups("imagenet")


def test_profile_claims_are_settings_with_the_same_keys():
    quick, full = get_profile("quick"), get_profile("full")
    assert set(quick.claims) == set(full.claims) and quick.claims
    # the quick profile (what CI runs) asserts every claim of the notebooks
    assert all(v is not None for v in quick.claims.values())
    assert quick.claim("02.gap_recovered_min") == 0.35 and full.claim("02.gap_recovered_min") is None
    with pytest.raises(KeyError, match="unknown claim"):
        quick.claim("02.no_such_claim")


def test_every_claim_a_notebook_reads_exists():
    import re
    from pathlib import Path
    used = set()
    for src in (Path(__file__).resolve().parent.parent / "notebooks" / "src").glob("*.py"):
        used |= set(re.findall(r'profile\.claim\("([^"]+)"\)', src.read_text()))
    assert used, "no notebook reads a claim"
    assert used <= set(get_profile("quick").claims), used - set(get_profile("quick").claims)
