"""Heavy artifacts (a trained teacher, LLM weights converted once) cached under a key of what built them.

An artifact is a folder ``<cache>/<name>-<key>/`` (``<cache>`` is :func:`course_lib.paths.cache_dir`).
The key is a short SHA-256 of a canonical JSON of the artifact's *inputs*: the settings that
matter, a fingerprint of the data, a fingerprint of the code that builds it, the library versions.
So a changed input builds a new folder beside the old one, an unchanged one is reused, and since
nothing in the key depends on where the repository lives, two clones sharing a cache
(``COURSE_CACHE``) share the artifact.

:func:`cached_artifact` builds a missing artifact atomically: ``build(folder)`` fills a temporary
folder, ``artifact.json`` (name, key, inputs, build time) is written into it, and the folder is
renamed into place; an interrupted build leaves no folder that looks finished. A lock file
serialises two processes building the same key (where ``fcntl`` exists), so the second one reuses
the first one's result instead of building it again.

Fingerprint helpers for the inputs: :func:`tensor_fingerprint` (the bytes, shape and dtype of
tensors or arrays), :func:`files_fingerprint` (names and sizes of source files, cheap for large
corpora), :func:`source_fingerprint` (the code of functions and classes, docstrings and comments
left out) and
:func:`torch_version` (major.minor only).

:func:`package_modules` derives the course_lib modules an experiment's code imports (transitively),
so that the LLM, speculative and DistilBERT experiments key on all the code they run, not on a
hand-written list that misses a loss.

What to put into the key is the builder's decision, and a deliberate one: too little and a stale
artifact is reused, too much (say, the whole training engine's source) and every unrelated edit
retrains. ``course_lib.teachers`` documents its choice.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import paths

__all__ = [
    "METADATA_FILE",
    "artifact_key",
    "artifact_dir",
    "artifact_metadata",
    "cached_artifact",
    "tensor_fingerprint",
    "files_fingerprint",
    "source_fingerprint",
    "torch_version",
]

METADATA_FILE = "artifact.json"
KEY_LENGTH = 16  # hex digits of the SHA-256 kept in folder names


def _canonical(value: Any) -> Any:
    """Plain JSON types only, so that the key never depends on a repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"artifact inputs must be finite numbers, got {value!r}")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"artifact input keys must be strings, got {key!r}")
            out[key] = _canonical(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, Path):
        raise TypeError(f"artifact inputs must not hold paths ({value}): they differ between clones; "
                        "use files_fingerprint() for the files' contents")
    raise TypeError(f"artifact inputs must be JSON values (str, number, bool, None, list, dict), "
                    f"got {type(value).__name__}: {value!r}")


def _canonical_json(inputs: Mapping[str, Any]) -> str:
    return json.dumps(_canonical(dict(inputs)), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def artifact_key(**inputs: Any) -> str:
    """A short SHA-256 (16 hex digits) of the canonical JSON of ``inputs`` (keys sorted, plain
    JSON values only: a ``TypeError`` names anything else)."""
    return hashlib.sha256(_canonical_json(inputs).encode("ascii")).hexdigest()[:KEY_LENGTH]


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise ValueError(f"artifact name must be a plain folder-name prefix, got {name!r}")


def artifact_dir(name: str, key_inputs: Mapping[str, Any], cache: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>-<key>``: where the artifact built from ``key_inputs`` lives (built or not)."""
    _check_name(name)
    root = Path(cache) if cache is not None else paths.cache_dir()
    return root / f"{name}-{artifact_key(**key_inputs)}"


def artifact_metadata(folder: str | os.PathLike) -> dict | None:
    """The ``artifact.json`` of a built artifact folder, or None if it is not (completely) built."""
    try:
        return json.loads((Path(folder) / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextmanager
def _build_lock(root: Path, folder_name: str) -> Iterator[None]:
    """One builder per artifact across processes (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    locks = root / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{folder_name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_artifact(name: str, key_inputs: Mapping[str, Any], build: Callable[[Path], None], *,
                    rebuild: bool = False, cache: str | os.PathLike | None = None) -> Path:
    """The folder of artifact ``name`` for ``key_inputs``, built by ``build(folder)`` if missing.

    ``build`` receives an empty temporary folder and writes the artifact's files into it; when it
    returns, ``artifact.json`` (``{"name", "key", "inputs", "built", "build_seconds",
    "environment"}``: :func:`build_environment`, the machine and libraries that built it) is added
    and the folder is renamed to ``<cache>/<name>-<key>``. If ``build`` raises, nothing is left
    behind. ``rebuild=True`` builds again and replaces an existing folder.
    """
    target = artifact_dir(name, key_inputs, cache)
    inputs, key = _canonical(dict(key_inputs)), artifact_key(**key_inputs)
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root, target.name):
        if not rebuild and artifact_metadata(target) is not None:
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=root))
        try:
            start = time.perf_counter()
            build(tmp)
            meta = {"name": name, "key": key, "inputs": inputs,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "build_seconds": round(time.perf_counter() - start, 1), "environment": build_environment()}
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a shared cache should be readable
            if target.exists():  # a rebuild, or a half-built folder from an older version
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=root))
                os.replace(target, old / "artifact")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------------
# Fingerprints of inputs


def tensor_fingerprint(*tensors: Any) -> str:
    """SHA-256 (16 hex digits) of the dtype, shape and bytes of torch tensors or NumPy arrays (a
    tensor and its ``.numpy()`` give the same fingerprint; the memory layout does not matter)."""
    import numpy as np

    digest = hashlib.sha256()
    for tensor in tensors:
        if hasattr(tensor, "detach"):  # torch.Tensor (any dtype, bfloat16 included)
            import torch

            t = tensor.detach().cpu().contiguous()
            dtype, shape = str(t.dtype).removeprefix("torch."), tuple(t.shape)
            raw = t.reshape(-1).view(torch.uint8).numpy()
        else:
            array = np.ascontiguousarray(tensor)
            if array.dtype.hasobject:
                raise TypeError("cannot fingerprint an array of Python objects")
            dtype, shape = array.dtype.name, array.shape
            raw = array.reshape(-1).view(np.uint8)
        digest.update(f"{dtype}{shape};".encode("ascii"))
        digest.update(raw.tobytes() if raw.size == 0 else raw)
    return digest.hexdigest()[:KEY_LENGTH]


def files_fingerprint(*roots: str | os.PathLike) -> str:
    """SHA-256 (16 hex digits) of the relative names and sizes of the files under ``roots`` (files
    or folders, walked in sorted order). Cheap for large corpora; locations do not matter."""
    digest = hashlib.sha256()
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"cannot fingerprint {root}: it does not exist")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        digest.update(f"<{root.name}>".encode())
        for path in files:
            rel = path.name if path == root else path.relative_to(root).as_posix()
            digest.update(f"{rel}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:KEY_LENGTH]


def _code_of(source: str) -> str:
    """The code of ``source`` without its docstrings, comments and layout: ``ast.dump`` of the parsed
    text with every module, class and function docstring removed. So editing what the code says
    about itself never rebuilds an artifact; editing what it does always does."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _qualified_name(obj: Any) -> str:
    """A function's or class's ``__qualname__``; a module's import name, also when it runs as
    ``python -m package.module`` (its ``__name__`` is then ``"__main__"``, its ``__spec__.name`` is not)."""
    if inspect.ismodule(obj):
        spec = getattr(obj, "__spec__", None)
        return spec.name if spec is not None else obj.__name__
    return getattr(obj, "__qualname__", getattr(obj, "__name__", ""))


def source_fingerprint(*objects: Any) -> str:
    """SHA-256 (16 hex digits) of the code of functions, classes or modules: their source text
    parsed, without docstrings, comments or formatting (:func:`_code_of`). Raises (``OSError``,
    ``TypeError`` for builtins) when a source is unavailable, rather than keying on nothing."""
    digest = hashlib.sha256()
    for obj in objects:
        code = _code_of(inspect.getsource(obj))
        digest.update(f"{_qualified_name(obj)}\0{code}\0".encode())
    return digest.hexdigest()[:KEY_LENGTH]


# Not followed by package_modules: where files go, the keys themselves, the cached experiments' plumbing
# (course_lib.experiments: caching, loading, the command line; what a run computes is its module's
# run_experiment) and the profiles' settings (an experiment's settings are in its key already); editing
# them must not rebuild every artifact.
NOT_CODE_OF_A_RUN = ("artifacts", "paths", "profiles", "netguard", "experiments")


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names an importable module (its parent packages are imported to find out)."""
    import importlib.util
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:
        return False


def package_modules(*modules: Any, package: str = "course_lib") -> list:
    """``modules`` and every module of ``package`` they import, followed through those modules'
    own imports (``from . import x``, ``from .x import y``, ``from package.x import y``, ``import
    package.x``, at any depth of the code, in functions too), sorted by name: the code an experiment
    runs, derived from the imports rather than listed by hand. Modules named in
    ``NOT_CODE_OF_A_RUN`` are left out. A module run as ``python -m`` is taken under its import name."""
    import importlib
    import importlib.util

    def name_of(module) -> str:
        spec = getattr(module, "__spec__", None)
        return spec.name if spec is not None else module.__name__

    todo = [importlib.import_module(name_of(m)) for m in modules]
    seen: dict[str, Any] = {}
    while todo:
        module = todo.pop()
        name = module.__name__
        if name in seen:
            continue
        seen[name] = module
        here = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            found = []
            if isinstance(node, ast.ImportFrom):
                base = (importlib.util.resolve_name("." * node.level + (node.module or ""), here)
                        if node.level else (node.module or ""))
                if base.split(".")[0] == package:
                    # `from pkg.x import y`: pkg.x, and pkg.x.y when y is a module; `from . import y`: pkg.y
                    found = ([base] if node.module else []) + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name.split(".")[0] == package and a.name != package]
            for dotted in found:
                parts = dotted.split(".")
                if dotted == package or len(parts) > 1 and parts[1] in NOT_CODE_OF_A_RUN:
                    continue
                if importlib.util.find_spec(parts[0]) is None or not _is_module(dotted):
                    continue                         # `from .x import name` of a function, not a module
                todo.append(importlib.import_module(dotted))
    return [seen[n] for n in sorted(seen)]


def build_environment() -> dict[str, Any]:
    """What built an artifact, beyond its key: the CPU, the threads torch used, the libraries'
    versions. CPU training is deterministic for one machine, thread count and set of versions; any
    of these changes the order of floating-point reductions, and training can amplify that into
    differences the size of the seed-to-seed spread (notebook 08 prints it)."""
    import platform
    from importlib import metadata

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for package in ("torch", "transformers", "numpy", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "versions": versions}


def torch_version() -> str:
    """``"major.minor"`` of the installed torch (patch releases do not change artifacts)."""
    import torch

    return ".".join(torch.__version__.split("+")[0].split(".")[:2])
