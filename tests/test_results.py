"""course_lib.results: recording figures, the report and the README table."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import paths
from course_lib import results as R


@pytest.fixture
def rpath(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "results.json"
    monkeypatch.setenv("COURSE_RESULTS", str(path))
    return path


def test_results_path_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    assert R.results_path() == paths.project_root() / "build" / "results.json"
    assert (paths.project_root() / "course_lib" / "results.py").exists()
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "x.json"))
    assert R.results_path() == tmp_path / "x.json"


def test_test_session_does_not_use_course_results():
    # conftest points the test session at build/test-results.json unless told otherwise
    assert R.results_path() != paths.project_root() / "build" / "results.json"


def test_record_roundtrip_creates_dirs(rpath, capsys):
    R.record("02_kd_loss", "gap_recovered", 0.64)
    R.record("02_kd_loss", "student_acc", 0.81)
    R.record("01_dark_knowledge", "teacher_acc", 0.9)
    assert capsys.readouterr().out == ""
    data = json.loads(rpath.read_text())
    assert data == {
        "02_kd_loss": {"gap_recovered": 0.64, "student_acc": 0.81},
        "01_dark_knowledge": {"teacher_acc": 0.9},
    }
    assert R.load_results() == data
    assert R.load_results(rpath) == data
    # no temporary files left behind
    assert sorted(p.name for p in rpath.parent.iterdir() if not p.name.endswith(".lock")) == ["results.json"]


def test_record_overwrites_and_keeps_others(rpath):
    R.record("nb", "a", 1)
    R.record("nb", "b", 2)
    R.record("nb", "a", 3)
    assert R.load_results() == {"nb": {"a": 3, "b": 2}}


def test_record_converts_numpy_and_torch_scalars(rpath):
    R.record_many(
        "nb",
        {
            "np_float": np.float32(0.5),
            "np_int": np.int64(7),
            "np_bool": np.bool_(True),
            "np_0d": np.array(2.5),
            "torch_float": torch.tensor(0.25),
            "torch_int": torch.tensor(3),
            "torch_one": torch.tensor([1.5]),
            "nested": {"seed": {0: {"acc": np.float64(0.75)}}, "list": [np.int32(1), torch.tensor(2.0)]},
        },
    )
    nb = R.load_results()["nb"]
    assert nb["np_float"] == 0.5 and type(nb["np_float"]) is float
    assert nb["np_int"] == 7 and type(nb["np_int"]) is int
    assert nb["np_bool"] is True
    assert nb["np_0d"] == 2.5
    assert nb["torch_float"] == 0.25 and nb["torch_int"] == 3 and nb["torch_one"] == 1.5
    assert nb["nested"] == {"seed": {"0": {"acc": 0.75}}, "list": [1, 2.0]}


@pytest.mark.parametrize(
    "bad",
    [object(), np.zeros(3), torch.zeros(2, 2), {"a": object()}, {(1, 2): 3}, [1, {2}], 1 + 2j, b"bytes"],
    ids=["object", "np-array", "tensor", "nested-object", "tuple-key", "set-in-list", "complex", "bytes"],
)
def test_record_rejects_non_json(rpath, bad):
    R.record("nb", "ok", 1)
    with pytest.raises(TypeError):
        R.record("nb", "bad", bad)
    assert R.load_results() == {"nb": {"ok": 1}}  # file untouched


def test_record_rejects_bad_names(rpath):
    with pytest.raises(TypeError):
        R.record("", "x", 1)
    with pytest.raises(TypeError):
        R.record("nb", 3, 1)
    with pytest.raises(TypeError):
        R.record_many("nb", [("a", 1)])
    for reserved in ("suite", "_meta"):
        with pytest.raises(ValueError, match="reserved"):
            R.record(reserved, "x", 1)


def test_load_results_missing_empty_and_corrupt(tmp_path):
    assert R.load_results(tmp_path / "nope.json") == {}
    (tmp_path / "empty.json").write_text("")
    assert R.load_results(tmp_path / "empty.json") == {}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        R.load_results(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        R.load_results(tmp_path / "list.json")


def test_record_suite(rpath):
    R.record("01_dark_knowledge", "teacher_acc", 0.9)
    R.record_suite("01_dark_knowledge", 61.234)
    R.record_suite("02_kd_loss", np.float64(70))
    R.record_suite("01_dark_knowledge", 60.0)
    data = R.load_results()
    assert data["suite"] == {"01_dark_knowledge": 60.0, "02_kd_loss": 70.0}
    assert data["01_dark_knowledge"] == {"teacher_acc": 0.9}
    with pytest.raises(TypeError):
        R.record_suite("x", "fast")


def test_record_meta(rpath):
    R.record_meta(profile="full", torch="2.14.1")
    R.record_meta(profile="quick")
    assert R.load_results()["_meta"] == {"profile": "quick", "torch": "2.14.1"}


SAMPLE = {
    "suite": {"02_kd_loss": 70.5, "01_dark_knowledge": 60.25},
    "01_dark_knowledge": {"teacher_acc": 0.912345678, "headline": ["teacher_acc"], "curve": [1, 2, 3]},
    "02_kd_loss": {
        "gap_recovered": 0.641234,
        "seeds": {"0": {"acc": 0.8123456}, "1": {"acc": 0.8}},
        "temperature": 4,
        "converged": True,
        "loss": "kl(teacher||student)",
        "headline": ["gap_recovered", "seeds.0.acc", "missing"],
    },
}


def test_render_report():
    text = R.render_report(SAMPLE)
    assert text.startswith("# Course results")
    lines = text.splitlines()
    suite_rows = [line for line in lines if line.startswith("| 0") and line.count("|") == 3]
    assert suite_rows[:2] == ["| 01_dark_knowledge | 60.25 |", "| 02_kd_loss | 70.5 |"]
    assert "| **total** | **130.8** |" in lines  # 130.75 to 4 significant digits
    assert "## 01_dark_knowledge" in lines and "## 02_kd_loss" in lines
    assert "| teacher_acc | 0.9123 |" in lines
    assert "| seeds.0.acc | 0.8123 |" in lines
    assert "| seeds.1.acc | 0.8 |" in lines
    assert "| temperature | 4 |" in lines
    assert "| converged | yes |" in lines
    assert "curve" not in text and "headline" not in text  # lists and the headline list are not figures
    assert text.index("## 01_dark_knowledge") < text.index("## 02_kd_loss")


def test_render_report_empty():
    text = R.render_report({})
    assert "No timings recorded yet." in text


def test_render_readme_table():
    text = R.render_readme_table(SAMPLE)
    lines = text.strip().splitlines()
    assert lines[0] == "| notebook | quick-profile seconds | headline figures |"
    assert lines[2] == "| 01_dark_knowledge | 60.25 | teacher_acc = 0.9123 |"
    assert lines[3] == "| 02_kd_loss | 70.5 | gap_recovered = 0.6412; seeds.0.acc = 0.8123 |"
    assert len(lines) == 4
    assert "No results" in R.render_readme_table({})
    # a notebook with figures but no timing still gets a row
    assert "| 03_x | - | - |" in R.render_readme_table({"03_x": {"a": 1}})
    assert "full-profile seconds" in R.render_readme_table({"_meta": {"profile": "full"}, "suite": {"a": 1}})


def test_update_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\nbefore\n<!-- results:begin -->\nold table\n<!-- results:end -->\nafter\n")
    assert R.update_readme(readme, SAMPLE) is True
    text = readme.read_text()
    assert text.startswith("# T\n\nbefore\n<!-- results:begin -->\n| notebook |")
    assert "old table" not in text
    assert text.endswith("<!-- results:end -->\nafter\n")
    assert R.update_readme(readme, SAMPLE) is False  # idempotent
    assert readme.read_text() == text
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="results:begin"):
        R.update_readme(readme, SAMPLE)


def test_module_cli_report(tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps(SAMPLE))
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- results:begin -->\n<!-- results:end -->\n")
    out = tmp_path / "out" / "report.md"
    repo_readme = (paths.project_root() / "README.md").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "course_lib.results", "report", "--results", str(results), "--out", str(out)],
        capture_output=True, text=True, cwd=paths.project_root(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == R.render_report(SAMPLE)
    # a user's run writes only its report: neither this README nor the repository's changes
    assert "70.5" not in readme.read_text() and (paths.project_root() / "README.md").read_text() == repo_readme
    proc = subprocess.run(
        [sys.executable, "-m", "course_lib.results", "publish", "--results", str(results), "--readme", str(readme)],
        capture_output=True, text=True, cwd=paths.project_root(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| 02_kd_loss | 70.5 |" in readme.read_text()


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(figures=st.dictionaries(st.text(min_size=1, max_size=6), _json_values, min_size=1, max_size=4))
def test_roundtrip_property(tmp_path_factory, figures):
    path = tmp_path_factory.mktemp("prop") / "r.json"
    R.record_many("nb", figures, path=path)
    assert R.load_results(path) == {"nb": figures}
    report = R.render_report(R.load_results(path))  # never fails on what was recorded
    assert "## nb" in report


@settings(max_examples=60, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_format_value_four_significant_digits(x):
    shown = R.format_value(x)
    assert math.isclose(float(shown), x, rel_tol=5e-4, abs_tol=1e-300)


def test_drift_names_the_published_figures_a_run_moved(tmp_path):
    from course_lib import results as R

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\n| notebook | quick-profile seconds | headline figures |\n"
                      "|---|---:|---|\n| 02_kd_loss | 135.3 | alone_mean = 82.54; gap_recovered = 0.431; "
                      "cached_over_alone = 1.078 |\n| 05_x | 80 | mean.KD = 85.28; mean.old = 83.1 |\n"
                      "<!-- results:end -->\n", encoding="utf-8")
    published = R.published_figures(readme)
    assert published == {"02_kd_loss": {"alone_mean": 82.54, "gap_recovered": 0.431, "cached_over_alone": 1.078},
                         "05_x": {"mean.KD": 85.28, "mean.old": 83.1}}
    run = {"02_kd_loss": {"alone_mean": 83.9, "gap_recovered": 0.47, "cached_over_alone": 2.5,
                          "headline": ["alone_mean", "gap_recovered", "cached_over_alone"]},
           "05_x": {"mean": {"KD": 85.0}, "headline": ["mean.KD"]}}
    moved = R.drift(run, published)
    # +1.36 points moves (tolerance 1), +0.039 of a fraction does not (0.05), a timing figure is never
    # compared, a published figure the run no longer reports is named
    assert [(nb, name) for nb, name, *_ in moved] == [("02_kd_loss", "alone_mean"), ("05_x", "mean.old")]
    assert moved[1][3] is None and "missing" in R.render_drift(moved)
    assert R.tolerance(436.5) == pytest.approx(4.365) and R.tolerance(82.5) == 1.0 and R.tolerance(0.43) == 0.05
    assert "no published figure moved" in R.render_drift([])
    with pytest.raises(ValueError, match="markers"):
        (tmp_path / "bare.md").write_text("no table\n")
        R.published_figures(tmp_path / "bare.md")
