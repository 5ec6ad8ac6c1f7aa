"""The texts notebook 08 classifies: the Amazon fine-food reviews, read offline from R's lazy-load
database (quick profile), or GLUE's SST-2 movie-review sentences from the hub (full profile,
``datasets``); and their encoding for BERT (see :mod:`course_lib.encoder`).
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .. import paths

__all__ = ["REVIEWS_INSTALL_HINT", "RDATA_INSTALL_HINT", "DATASETS", "reviews_dir", "Reviews", "load_reviews",
           "load_sst2", "load_texts", "EncodedReviews", "encode_reviews"]

REVIEWS_INSTALL_HINT = ("install it with `make setup` (or `bash scripts/install_assets.sh`, which unpacks "
                        "Debian's r-cran-modeldata without R)")
RDATA_INSTALL_HINT = "install it with `make setup`, or `pip install rdata` (it reads R's data files)"
REVIEWS_SUBDIR = ("modeldata", "usr", "lib", "R", "site-library", "modeldata", "data")
LABELS = {"great": 1, "other": 0}


# --------------------------------------------------------------------------- the reviews, offline

def reviews_dir() -> Path:
    """``<assets>/modeldata/usr/lib/R/site-library/modeldata/data``: where ``scripts/install_assets.sh``
    unpacks Debian's ``r-cran-modeldata`` (``Rdata.rdb`` / ``Rdata.rdx``), whether or not it is there."""
    return paths.assets_dir().joinpath(*REVIEWS_SUBDIR)


@dataclass(frozen=True, eq=False)
class Reviews:
    """Review texts and their labels (int64, 1 = "great", 0 = "other")."""

    texts: tuple[str, ...]
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not torch.is_tensor(self.labels) or self.labels.dim() != 1 or len(self.labels) != len(self.texts):
            raise ValueError(f"labels must be a 1-d tensor with one label per text ({len(self.texts)} texts)")

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return f"Reviews({len(self)} texts, {int(self.labels.sum())} great)"

    def subset(self, n: int, *, seed: int = 0) -> Reviews:
        """``n`` reviews drawn without replacement (from ``seed``), in their original order."""
        if not 0 < n <= len(self):
            raise ValueError(f"n must lie in [1, {len(self)}], got {n}")
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return Reviews(tuple(self.texts[i] for i in keep.tolist()), self.labels[keep].clone())


def _import_rdata():
    try:
        import rdata
    except ImportError as e:
        raise ModuleNotFoundError(f"reading the reviews needs the package rdata ({e}); {RDATA_INSTALL_HINT}") from None
    return rdata


def _unpack(chunk: bytes, compressed: int) -> bytes:
    """One value of R's lazy-load database: a 4-byte big-endian length, then (compression 2 or 3) a
    type byte, then the stream: ``Z`` raw LZMA2 (xz, R's ``compress=3``), ``2`` bzip2, ``1`` zlib,
    ``0`` stored; compression 1 is a zlib stream right after the length."""
    (length,) = struct.unpack(">I", chunk[:4])
    if compressed == 1:
        data = zlib.decompress(chunk[4:])
    elif compressed in (2, 3):
        kind, body = chunk[4:5], chunk[5:]
        if kind == b"Z":
            data = lzma.decompress(body, format=lzma.FORMAT_RAW,
                                   filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
        elif kind == b"2":
            data = bz2.decompress(body)
        elif kind == b"1":
            data = zlib.decompress(body)
        elif kind == b"0":
            data = body
        else:
            raise ValueError(f"unknown compression type {kind!r} in an R lazy-load database")
    else:
        raise ValueError(f"unknown R lazy-load compression {compressed}")
    if len(data) != length:
        raise ValueError(f"corrupt R lazy-load value: {len(data)} bytes, expected {length}")
    return data


def _read_lazyload(folder: Path, names: Sequence[str]) -> dict[str, Any]:
    """The R objects ``names`` of the lazy-load database ``folder/Rdata.rdb`` (index ``Rdata.rdx``),
    converted by ``rdata.conversion`` (a data frame becomes a pandas ``DataFrame``)."""
    rdata = _import_rdata()

    def parse(raw: bytes):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)        # rdata's notes on R classes it maps by default
            return rdata.conversion.convert(rdata.parser.parse_data(raw, extension=".rds"))

    index_raw = (folder / "Rdata.rdx").read_bytes()
    index = parse(gzip.decompress(index_raw) if index_raw[:2] == b"\x1f\x8b" else _unpack(index_raw, 3))
    variables = {str(k): v for k, v in index["variables"].items()}
    compressed = int(index["compressed"][0])
    missing = [n for n in names if n not in variables]
    if missing:
        raise KeyError(f"{folder}: no object {missing}; the database holds {sorted(variables)}")
    out = {}
    with open(folder / "Rdata.rdb", "rb") as db:
        for name in names:
            offset, length = (int(x) for x in variables[name])
            db.seek(offset)
            out[name] = parse(_unpack(db.read(length), compressed))
    return out


def _reviews_of(frame, name: str) -> Reviews:
    texts = frame["review"].tolist()
    scores = frame["score"].astype(str).tolist()
    unknown = sorted(set(scores) - set(LABELS))
    if unknown or any(not isinstance(t, str) for t in texts):
        raise ValueError(f"{name}: expected string reviews and scores in {sorted(LABELS)}, "
                         f"found {unknown or 'a missing text'}")
    return Reviews(tuple(texts), torch.tensor([LABELS[s] for s in scores], dtype=torch.long))


def load_reviews(folder: str | Path | None = None) -> tuple[Reviews, Reviews]:
    """``(train, test)``: the Amazon fine-food reviews of R's ``modeldata`` (Debian ``r-cran-modeldata``),
    objects ``training_data`` (4000 reviews, 2600 "great") and ``testing_data`` (1000): the text
    column ``review`` and the label column ``score`` ("great" -> 1, "other" -> 0). The texts come
    lower-cased with punctuation removed. ``folder`` defaults to :func:`reviews_dir`. Most of its time
    goes to importing pandas, which rdata needs.
    """
    root = Path(folder) if folder is not None else reviews_dir()
    if not (root / "Rdata.rdb").is_file() or not (root / "Rdata.rdx").is_file():
        raise FileNotFoundError(f"the fine-food reviews (R package modeldata: Rdata.rdb, Rdata.rdx) are not in "
                                f"{root}; {REVIEWS_INSTALL_HINT}")
    frames = _read_lazyload(root, ("training_data", "testing_data"))
    return _reviews_of(frames["training_data"], "training_data"), _reviews_of(frames["testing_data"], "testing_data")


def load_sst2() -> tuple[Reviews, Reviews]:
    """``(train, test)``: GLUE's SST-2 (Socher et al. 2013), 67,349 training sentences and the 872
    validation ones as the test set (GLUE's test labels are hidden), label 1 = positive. Downloaded
    from the Hugging Face hub by ``datasets`` (``pip install datasets``; the full profile's Colab set-up
    installs it), so it needs the network (``COURSE_ALLOW_DOWNLOAD=1``)."""
    try:
        import datasets
    except ImportError:
        raise ModuleNotFoundError("SST-2 comes from the hub through the `datasets` package: pip install datasets "
                                  "(the full profile's set-up installs it)") from None
    sst2 = datasets.load_dataset("glue", "sst2")

    def split(name: str) -> Reviews:
        part = sst2[name]
        return Reviews(tuple(str(t) for t in part["sentence"]), torch.tensor(list(part["label"]), dtype=torch.long))
    return split("train"), split("validation")


DATASETS = {"reviews": load_reviews, "sst2": load_sst2}


def load_texts(dataset: str = "reviews") -> tuple[Reviews, Reviews]:
    """``(train, test)`` of ``dataset``: ``"reviews"`` (:func:`load_reviews`, offline) or ``"sst2"``
    (:func:`load_sst2`, from the hub)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {sorted(DATASETS)}")
    return DATASETS[dataset]()


class EncodedReviews(Dataset):
    """Tokenised reviews of one fixed length as Trainer items ``{"input_ids", "attention_mask",
    "labels", ...}`` (every tensor ``[N, ...]``; cached teacher outputs may ride along, see
    :func:`teacher_outputs`)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        if "input_ids" not in tensors or "attention_mask" not in tensors:
            raise ValueError("EncodedReviews needs input_ids and attention_mask")
        n = len(tensors["input_ids"])
        bad = {k: tuple(v.shape) if torch.is_tensor(v) else type(v).__name__ for k, v in tensors.items()
               if not torch.is_tensor(v) or len(v) != n}
        if bad:
            raise ValueError(f"every tensor must have {n} rows, got {bad}")
        self.tensors = dict(tensors)

    def __len__(self) -> int:
        return len(self.tensors["input_ids"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def with_tensors(self, **extra: torch.Tensor) -> EncodedReviews:
        """A new dataset with ``extra`` tensors added (the same rows)."""
        return EncodedReviews({**self.tensors, **extra})


def encode_reviews(tokenizer, reviews: Reviews, *, max_length: int = 64) -> EncodedReviews:
    """Tokenise (truncated and padded to ``max_length``; ``[CLS] ... [SEP]``) into an
    :class:`EncodedReviews`. Many reviews are longer than the default length (the experiment records
    the truncated share): 48 tokens keep the quick profile's training cost within its budget; the
    longer the reviews kept, the more each step costs."""
    enc = tokenizer(list(reviews.texts), max_length=max_length, truncation=True, padding="max_length",
                    return_tensors="pt")
    return EncodedReviews({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                           "labels": reviews.labels.clone()})


