import gzip
import os

import numpy as np
import pytest
import torch

from course_lib import data as data_mod
from course_lib.data import TensorData, find_fashion_mnist, load_fashion_mnist, random_shift_flip
from course_lib.models import MLPStudent, StudentCNN, TeacherCNN, build_model, count_parameters
from course_lib.profiles import (configure_threads, environment_report, get_device, get_profile,
                                 seed_everything)


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


def test_parameter_counts_match_the_calibration():
    assert count_parameters(TeacherCNN()) == 390_634
    assert count_parameters(StudentCNN()) == 20_490
    assert count_parameters(build_model("student_cnn_small")) == 9_098
    assert count_parameters(MLPStudent(hidden=(32,))) == 784 * 32 + 32 + 32 * 10 + 10
    cifar = build_model("teacher", TensorData(torch.zeros(2, 3, 32, 32), torch.zeros(2), tuple(range(100))))
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet9000")


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
    g = seed_everything(3)
    a = torch.rand(1).item(); seed_everything(3); assert torch.rand(1).item() == a
    assert isinstance(g, torch.Generator)
