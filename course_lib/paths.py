"""Where the course reads and writes files: the one place that resolves them.

Two situations, told apart by :func:`repo_root`:

* **A checkout** of the course repository (``make setup``, an editable install, ``pytest``): the
  package's parent folder holds a ``pyproject.toml`` declaring the project ``kd-course`` and a
  ``notebooks/`` folder. Everything lives in the repository: ``build/`` for results and exported
  notebooks, ``.cache/course/`` for trained artifacts, ``.cache/assets/`` for what
  ``scripts/install_assets.sh`` installs, ``exercises/`` and ``solutions/``.
* **An installed package** (``pip install`` of the repository, as the Colab setup cell does): the
  package sits in ``site-packages`` and nothing is written there. Results, build output, exercises
  and solutions are relative to the course folder ``$COURSE_HOME`` when it is set (the Colab setup
  cell clones the repository, installs it from the clone and sets it to the clone), else to the
  current working directory; artifacts and assets go to the user's cache folder,
  :func:`user_cache_dir` (``$XDG_CACHE_HOME/kd-course`` or ``~/.cache/kd-course``;
  ``%LOCALAPPDATA%\\kd-course`` on Windows).

Environment overrides: ``COURSE_HOME`` (the course folder of an installed package),
``COURSE_CACHE`` (the artifact cache, :func:`cache_dir`), ``ASSETS_DIR``
(the assets folder, the variable ``scripts/install_assets.sh`` reads) and ``COURSE_RESULTS`` (the
results file, read by :func:`course_lib.results.results_path`).

Every function resolves its answer when called (nothing is frozen at import), so an environment
variable set, or a ``chdir`` done, after ``import course_lib`` is honoured. Nothing here creates
folders: the code that writes a file creates its parent.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

__all__ = [
    "PROJECT_NAME",
    "HOME_ENV",
    "CACHE_ENV",
    "ASSETS_ENV",
    "RESULTS_ENV",
    "repo_root",
    "project_root",
    "build_dir",
    "user_cache_dir",
    "cache_root",
    "cache_dir",
    "assets_dir",
    "downloads_dir",
    "exercises_dir",
    "solutions_dir",
]

PROJECT_NAME = "kd-course"      # the distribution name in pyproject.toml; also the user cache folder
HOME_ENV = "COURSE_HOME"        # the course folder (a clone) when the package is installed, e.g. on Colab
CACHE_ENV = "COURSE_CACHE"      # overrides cache_dir()
ASSETS_ENV = "ASSETS_DIR"       # overrides assets_dir() (scripts/install_assets.sh reads it too)
RESULTS_ENV = "COURSE_RESULTS"  # overrides the results file (course_lib.results.results_path)

_PACKAGE_DIR = Path(__file__).resolve().parent


def _declares_project(pyproject: Path) -> bool:
    """Whether ``pyproject`` has ``name = "kd-course"`` in its ``[project]`` table."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return False
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10: the [project] table's name line
        match = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
        name = re.search(r"^name\s*=\s*[\"']([^\"']+)[\"']", match.group(1), re.M) if match else None
        return bool(name and name.group(1) == PROJECT_NAME)
    try:
        return tomllib.loads(text).get("project", {}).get("name") == PROJECT_NAME
    except tomllib.TOMLDecodeError:
        return False


@functools.cache
def _checkout_of(package_dir: Path) -> Path | None:
    candidate = package_dir.parent
    if (candidate / "notebooks").is_dir() and _declares_project(candidate / "pyproject.toml"):
        return candidate
    return None


def repo_root() -> Path | None:
    """The course repository this package was imported from, or None when it is installed.

    A folder counts as the repository only if it is the package's parent *and* holds a
    ``pyproject.toml`` declaring the project ``kd-course`` and a ``notebooks/`` folder (being the
    parent of the package is not enough: for an installed package that is ``site-packages``).
    """
    return _checkout_of(_PACKAGE_DIR)


def project_root() -> Path:
    """The repository in a checkout, else ``$COURSE_HOME``, else the current working directory."""
    home = os.environ.get(HOME_ENV)
    return repo_root() or (Path(home).expanduser() if home else Path.cwd())


def build_dir() -> Path:
    """``<project root>/build``: results, report, executed notebooks, HTML pages and decks."""
    return project_root() / "build"


def user_cache_dir() -> Path:
    """The per-user cache folder of the course: ``%LOCALAPPDATA%\\kd-course`` on Windows, else
    ``$XDG_CACHE_HOME/kd-course`` or ``~/.cache/kd-course``."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"])
    else:
        base = Path.home() / ".cache"
    return base / PROJECT_NAME


def cache_root() -> Path:
    """``<repo>/.cache`` in a checkout, else :func:`user_cache_dir`; holds ``course/`` and ``assets/``."""
    root = repo_root()
    return root / ".cache" if root is not None else user_cache_dir()


def cache_dir() -> Path:
    """Trained artifacts (the teacher, LLM artifacts): ``$COURSE_CACHE``, else ``<cache root>/course``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else cache_root() / "course"


def assets_dir() -> Path:
    """What ``scripts/install_assets.sh`` installs (corpora, reveal.js): ``$ASSETS_DIR``, else
    ``<cache root>/assets`` (``<repo>/.cache/assets`` in a checkout)."""
    env = os.environ.get(ASSETS_ENV)
    return Path(env) if env else cache_root() / "assets"


def downloads_dir() -> Path:
    """Where torchvision downloads datasets (full profile): ``<user cache dir>/data``, shared by
    every checkout of the user, since a standard dataset does not depend on the course's code."""
    return user_cache_dir() / "data"


def exercises_dir() -> Path:
    """``<project root>/exercises``: the student stubs."""
    return project_root() / "exercises"


def solutions_dir() -> Path:
    """``<project root>/solutions``: the reference answers."""
    return project_root() / "solutions"
