"""A student's first hour: ``make lab`` sets up only what notebook 01 needs, and a notebook that needs
a cached experiment builds it on first use, saying first what it builds, for how long and where."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from course_lib import experiments, modes
from course_lib.experiments import REFERENCE_BUILD_MINUTES, CachedExperiment

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("course_lib.llm.experiment", "course_lib.llm.speculative_experiment", "course_lib.encoder.experiment")


def _commands(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_the_labs_setup_builds_no_llm_or_encoder_artifact():
    """make -n -B (every prerequisite as if out of date: an empty cache, a fresh clone) lists what make lab runs."""
    lab = _commands("lab")
    assert "course_lib.teachers" in lab and "install_assets.sh" in lab and "scripts/lab.py" in lab
    assert not [m for m in HEAVY if m in lab], lab


def test_course_and_test_still_build_everything_first():
    for target in ("course", "test"):
        commands = _commands(target)
        assert all(m in commands for m in HEAVY), (target, commands)


@dataclasses.dataclass(frozen=True)
class _Settings:
    size: int = 3


def _experiment(name: str, built: list) -> CachedExperiment:
    def run(folder, settings, progress):
        built.append(settings.size)
        (folder / "results.json").write_text(json.dumps({"size": settings.size}))
        return {}
    return CachedExperiment(name, recipe_version=1, settings_field="llm", module=modes, run=run, notebook="99")


def test_a_first_use_build_says_what_how_long_and_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    built: list = []
    exp = _experiment("toy_experiment", built)
    folder = exp.folder(_Settings())
    out = capsys.readouterr().out
    assert built == [3] and "building notebook 99's toy_experiment experiment, once: several minutes" in out
    assert str(folder) in out
    assert exp.load_results(_Settings()) == {"size": 3} and built == [3]     # cached: no second build
    assert "building" not in capsys.readouterr().out


def test_the_estimate_is_this_machines_last_build_else_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    name = "distilbert_case_study"
    exp = _experiment(name, [])
    target = tmp_path / f"{name}-0123456789abcdef"
    notice = exp.build_notice(target)
    assert f"about {REFERENCE_BUILD_MINUTES[name]} minutes on a 2-core CPU" in notice and str(target) in notice
    for key, built, seconds in [("aaaa", "2026-12-01T10:00:00+0000", 3000.0), ("bbbb", "2026-12-05T10:00:00+0000", 610.0)]:
        (tmp_path / f"{name}-{key}").mkdir()
        (tmp_path / f"{name}-{key}" / experiments.METADATA_FILE).write_text(
            json.dumps({"built": built, "build_seconds": seconds}))
    assert "about 10 minutes (this machine's last build of it)" in exp.build_notice(target)


def test_every_cached_experiment_has_a_reference_estimate():
    from course_lib.encoder import experiment as encoder
    from course_lib.llm import experiment as llm, speculative_experiment as speculative
    names = {m.EXPERIMENT.name for m in (llm, speculative, encoder)}
    assert names == set(REFERENCE_BUILD_MINUTES)
