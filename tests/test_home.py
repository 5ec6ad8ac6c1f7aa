"""The course's public home is one setting (``[tool.kd-course]`` in pyproject.toml): the Colab badges, the
notebooks' Colab setup cells and the README's links are generated from it, so publishing the course
under another address is a one-line change."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import build_notebooks  # noqa: E402

GENERATED = ("README.md",)            # its links are rewritten by build_notebooks.py (checked below)


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.splitlines()]


def test_the_repository_is_written_in_one_place():
    repository, _ = build_notebooks.home()
    holders = [p.relative_to(REPO).as_posix() for p in _tracked()
               if p.suffix != ".ipynb" and p.name not in GENERATED and p.is_file()
               and repository in p.read_text(encoding="utf-8", errors="ignore")]
    assert holders == ["pyproject.toml"], holders


def test_the_readme_and_the_notebooks_follow_the_setting():
    repository, branch = build_notebooks.home()
    assert build_notebooks.build(check=True) == []               # README and notebooks are up to date
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(f"colab.research.google.com/github/{repository}/blob/{branch}/notebooks/") == 8
    for notebook in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = notebook.read_text(encoding="utf-8")
        assert f"github/{repository}/blob/{branch}/notebooks/{notebook.name}" in text, notebook.name
        assert f"https://github.com/{repository}.git" in text and "{{COURSE_" not in text, notebook.name


def test_another_home_is_a_one_line_change(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    repository, branch = build_notebooks.home()
    pyproject.write_text(text.replace(f'repository = "{repository}"', 'repository = "a-school/kd-2027"', 1)
                         .replace(f'branch = "{branch}"', 'branch = "spring"', 1))
    new_repository, new_branch = build_notebooks.home(pyproject)
    assert (new_repository, new_branch) == ("a-school/kd-2027", "spring")
    readme = build_notebooks.readme_with_home((REPO / "README.md").read_text(encoding="utf-8"), new_repository,
                                              new_branch)
    assert repository not in readme and readme.count("github/a-school/kd-2027/blob/spring/notebooks/") == 8
    assert "`github.com/a-school/kd-2027`, the course's public home" in readme
    source = (REPO / "notebooks" / "src" / "06_llm_distillation_speculative.py").read_text(encoding="utf-8")
    built = build_notebooks.with_home(source, new_repository, new_branch)
    assert "https://github.com/a-school/kd-2027.git" in built and '"--branch", "spring"' in built


@pytest.mark.parametrize("repository, branch", [("no-slash", "main"), ("a/b/c", "main"), ("a/b", "has space")])
def test_a_malformed_home_is_refused(tmp_path, repository, branch):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[tool.kd-course]\nrepository = "{repository}"\nbranch = "{branch}"\n')
    with pytest.raises(ValueError, match="owner/name"):
        build_notebooks.home(pyproject)
