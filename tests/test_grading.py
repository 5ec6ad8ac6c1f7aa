"""The exercise generator and the autograder (course_lib.grading).

Self-contained: uses only pytest's tmp_path/capsys fixtures, no conftest.
"""
from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_lib import grading
from course_lib.grading import MarkerError, check_exercises_in_sync, generate_exercises, grade, strip_solutions
from course_lib.grading_checks import CHECKS

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
MODULES = sorted({c.module for c in CHECKS})


def failed(report) -> set[str]:
    return {r.check for r in report.rows if r.earned < r.points}


def mutant(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> Path:
    """A copy of solutions/ with each ``(old, new)`` text replacement applied (each must apply once)."""
    folder = tmp_path / "mutant"
    shutil.copytree(SOLUTIONS, folder)
    for name, replacements in edits.items():
        path = folder / f"{name}.py"
        text = path.read_text()
        for old, new in replacements:
            assert text.count(old) == 1, f"mutation target not found once in {name}: {old!r}"
            text = text.replace(old, new)
        path.write_text(text)
    return folder


# --------------------------------------------------------------------------- the course's own folders

def test_solutions_get_full_marks():
    report = grade(SOLUTIONS)
    assert report.earned == report.total > 0, report.table(verbose=True)
    assert report.fraction == 1.0
    assert set(report.by_module()) == set(MODULES)


def test_every_graded_module_has_at_least_two_exercises_and_checks():
    for module in MODULES:
        functions = {c.function for c in CHECKS if c.module == module}
        assert len(functions) >= 2, module
        assert all(c.points > 0 for c in CHECKS if c.module == module)
    names = [(c.module, c.name) for c in CHECKS]
    assert len(names) == len(set(names)), "check names must be unique within a module"


def test_stubs_score_exactly_zero():
    report = grade(EXERCISES)
    assert report.total == grade(SOLUTIONS).total
    assert report.earned == 0, report.table(verbose=True)
    graded = [r for r in report.rows if r.points]
    assert graded and all(r.message.startswith("not implemented") for r in graded), report.table()


def test_exercises_are_in_sync_with_solutions(tmp_path):
    assert check_exercises_in_sync() == [], "run `python -m course_lib.grading generate`"
    generate_exercises(SOLUTIONS, tmp_path)
    expected = sorted(p.name for p in SOLUTIONS.glob("*.py"))
    assert sorted(p.name for p in tmp_path.glob("*.py")) == expected
    assert sorted(p.name for p in EXERCISES.glob("*.py")) == expected
    for name in expected:
        assert filecmp.cmp(tmp_path / name, EXERCISES / name, shallow=False), name


def test_exercises_keep_everything_but_the_solutions():
    for path in SOLUTIONS.glob("*.py"):
        solution, exercise = path.read_text(), (EXERCISES / path.name).read_text()
        assert exercise.startswith(f"# GENERATED from solutions/{path.name} by `python -m course_lib.grading generate`")
        assert "### BEGIN SOLUTION" not in exercise and "### END SOLUTION" not in exercise
        assert solution.count("### BEGIN SOLUTION") == exercise.count('raise NotImplementedError("Exercise: ')
        # Docstrings (the task statements) survive unchanged.
        import ast
        def docs(text):
            return {n.name: ast.get_docstring(n) for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)}
        assert docs(solution) == docs(exercise)
        assert all(docs(solution).values())


def test_solutions_and_exercises_never_collide_in_sys_modules():
    a = grading.load_module(SOLUTIONS / "ex01_dark_knowledge.py")
    b = grading.load_module(EXERCISES / "ex01_dark_knowledge.py")
    assert a.__name__ != b.__name__
    import torch
    assert a.entropy(torch.tensor([0.5, 0.5])) > 0
    with pytest.raises(NotImplementedError):
        b.entropy(torch.tensor([0.5, 0.5]))


def test_grading_is_fast():
    grade(SOLUTIONS)  # warm-up (first calls into torch kernels)
    start = time.perf_counter()
    grade(SOLUTIONS)
    grade(EXERCISES)
    assert time.perf_counter() - start < 5.0


def test_only_selects_modules():
    report = grade(SOLUTIONS, only="ex01")
    assert set(report.by_module()) == {"ex01_dark_knowledge"}
    with pytest.raises(ValueError):
        grade(SOLUTIONS, only="ex99")
    markdown = report._repr_markdown_()  # what a notebook cell ending in grade(...) shows
    assert markdown.startswith("| check | points | earned | message |") and "**100.0%**" in markdown
    assert str(report) == repr(report) == report.table()


# --------------------------------------------------------------------------- the checks can fail

MUTATIONS = {
    "kd_loss_reverse_kl": (
        {"ex02_kd_loss": [("kl = (log_pt.exp() * (log_pt - log_ps))", "kl = (log_ps.exp() * (log_ps - log_pt))")]},
        {"kd_loss_matches_reference", "kd_loss_is_forward_kl"}, "reverse KL"),
    "kd_loss_without_T_squared": (
        {"ex02_kd_loss": [("alpha * temperature ** 2 * kl", "alpha * kl")]},
        {"kd_loss_matches_reference", "kd_loss_gradient_scale_is_temperature_independent"}, "T^2"),
    "kd_loss_kldivloss_default_mean": (
        {"ex02_kd_loss": [("kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).mean()",
                           "kl = F.kl_div(log_ps, log_pt.exp(), reduction='mean')")]},
        {"kd_loss_matches_reference", "kd_loss_is_forward_kl"}, "reduction='mean'"),
    "kd_loss_alpha_swapped": (
        {"ex02_kd_loss": [("alpha * temperature ** 2 * kl + (1 - alpha) * ce",
                           "(1 - alpha) * temperature ** 2 * kl + alpha * ce")]},
        {"kd_loss_matches_reference", "kd_loss_alpha_zero_is_cross_entropy"}, "swapped"),
    "reverse_kl_is_forward": (
        {"ex02_kd_loss": [("return (log_ps.exp() * (log_ps - log_pt))", "return (log_pt.exp() * (log_pt - log_ps))")]},
        {"reverse_kl_matches_reference", "reverse_kl_properties"}, "forward KL"),
    "kd_gradient_sign_flipped": (
        {"ex02_kd_loss": [("return (p_s - p_t) / temperature", "return (p_t - p_s) / temperature")]},
        {"kd_gradient_matches_autograd", "kd_gradient_high_temperature_limit"}, "sign"),
    "kd_gradient_without_1_over_T": (
        {"ex02_kd_loss": [("return (p_s - p_t) / temperature", "return p_s - p_t")]},
        {"kd_gradient_matches_autograd", "kd_gradient_high_temperature_limit"}, "1/T"),
    "softmax_ignores_temperature": (
        {"ex01_dark_knowledge": [("torch.softmax(logits / temperature, dim=-1)", "torch.softmax(logits, dim=-1)")]},
        {"softmax_matches_reference", "softmax_temperature_limits"}, None),
    "softmax_accepts_zero_temperature": (
        {"ex01_dark_knowledge": [("if temperature <= 0:", "if temperature < 0:")]},
        {"softmax_rejects_nonpositive_temperature"}, "ValueError"),
    "softmax_overflows": (
        {"ex01_dark_knowledge": [("return torch.softmax(logits / temperature, dim=-1)",
                                  "e = torch.exp(logits / temperature)\n    return e / e.sum(-1, keepdim=True)")]},
        {"softmax_is_stable_for_large_logits"}, "NaN"),
    "entropy_in_bits": (
        {"ex01_dark_knowledge": [("probs * torch.log(probs)", "probs * torch.log2(probs)")]},
        {"entropy_matches_reference", "entropy_limits", "entropy_grows_with_temperature"}, None),
    "entropy_0_log_0_is_nan": (
        {"ex01_dark_knowledge": [("torch.where(probs > 0, probs * torch.log(probs), torch.zeros_like(probs))",
                                  "probs * torch.log(probs)")]},
        {"entropy_limits"}, "NaN"),
    "similarity_divides_by_N": (
        {"ex01_dark_knowledge": [("sums / counts.clamp_min(1).unsqueeze(1)", "sums / len(labels)")]},
        {"similarity_hand_example", "similarity_properties"}, None),
}


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # F.kl_div's own hint
@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_wrong_solution_loses_points(tmp_path, name):
    edits, must_fail, hint = MUTATIONS[name]
    report = grade(mutant(tmp_path, edits))
    assert must_fail <= failed(report), report.table(verbose=True)
    assert report.earned < report.total
    untouched = set(MODULES) - set(edits)
    for module in untouched:  # a mistake in one file costs nothing in the others
        earned, total = report.by_module()[module]
        assert earned == total, module
    if hint:
        messages = " ".join(r.message for r in report.rows if r.check in must_fail)
        assert hint in messages, messages


@pytest.mark.parametrize("line", [
    "from course_lib.losses import kd_loss as _reference_kd_loss",
    "import course_lib.losses",
    "from course_lib import losses",
    "_ref = __import__('importlib').import_module('course_lib.losses')",
])
def test_using_course_lib_scores_zero_for_that_file(tmp_path, line):
    folder = mutant(tmp_path, {"ex02_kd_loss": [("import torch\n", f"import torch\n{line}\n")]})
    report = grade(folder)
    earned, total = report.by_module()["ex02_kd_loss"]
    assert earned == 0 and total > 0
    assert all("course_lib" in r.message for r in report.rows if r.module == "ex02_kd_loss")
    earned, total = report.by_module()["ex01_dark_knowledge"]
    assert earned == total


def test_broken_or_missing_files_are_reported_not_raised(tmp_path):
    folder = mutant(tmp_path, {"ex01_dark_knowledge": [("import torch\n", "import torch\ndef broken(:\n")]})
    (folder / "ex02_kd_loss.py").unlink()
    report = grade(folder)
    assert report.earned == 0
    messages = {r.module: r.message for r in report.rows if r.points == 0}
    assert "SyntaxError" in messages["ex01_dark_knowledge"]
    assert "missing file" in messages["ex02_kd_loss"]


def test_a_crashing_or_printing_answer_only_loses_its_checks(tmp_path, capsys):
    folder = mutant(tmp_path, {"ex01_dark_knowledge": [
        ('    return -plogp.sum(dim=-1)', '    print("debug")\n    return {}["boom"]')]})
    report = grade(folder)
    assert failed(report) == {"entropy_matches_reference", "entropy_limits", "entropy_grows_with_temperature"}
    assert all("KeyError" in r.message for r in report.rows if r.check.startswith("entropy"))
    assert "debug" not in capsys.readouterr().out


# --------------------------------------------------------------------------- the generator

NESTED = '''\
class Model:
    def forward(self, x):
        """Docstring kept."""
        if x is not None:
            ### BEGIN SOLUTION
            y = x + 1
            if y > 2:
                return y
            ### END SOLUTION
        return None

    def helper(self):
        ### BEGIN SOLUTION
        return 42
        ### END SOLUTION


def top():
    return "untouched"
'''


def test_generator_keeps_the_markers_indentation():
    out = strip_solutions(NESTED)
    assert "y = x + 1" not in out and "return 42" not in out
    assert '            raise NotImplementedError("Exercise: implement forward()")\n' in out
    assert '        raise NotImplementedError("Exercise: implement helper()")\n' in out
    assert '            # YOUR CODE HERE\n' in out
    assert '        return None\n' in out and 'return "untouched"' in out and '"""Docstring kept."""' in out
    namespace: dict = {}
    exec(compile(out, "<generated>", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="helper"):
        namespace["Model"]().helper()
    assert namespace["Model"]().forward(None) is None
    assert strip_solutions("x = 1\n") == "x = 1\n"  # no markers: unchanged


def test_generator_keeps_crlf_line_endings():
    out = strip_solutions(NESTED.replace("\n", "\r\n"))
    assert "\n" not in out.replace("\r\n", "")


@pytest.mark.parametrize("text, error", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without a matching"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION\n", "nested"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n### END SOLUTION\n", "indented differently"),
    ("def f():\n    ## BEGIN SOLUTION\n    return 1\n", "malformed"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### end solution\n", "malformed"),
])
def test_generator_rejects_bad_markers(text, error):
    with pytest.raises(MarkerError, match=error):
        strip_solutions(text, "f.py")


def test_bad_markers_leave_exercises_untouched(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "exercises"
    src.mkdir()
    (src / "a.py").write_text("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    generate_exercises(src, dst)
    before = (dst / "a.py").read_text()
    (src / "b.py").write_text("def g():\n    ### BEGIN SOLUTION\n    return 2\n")
    with pytest.raises(MarkerError, match="b.py:2"):
        generate_exercises(src, dst)
    assert (dst / "a.py").read_text() == before and not (dst / "b.py").exists()


def test_check_sync_reports_missing_edited_and_stale_files(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "exercises"
    shutil.copytree(SOLUTIONS, src)
    shutil.copy(src / "ex01_dark_knowledge.py", src / "ex09_gone.py")
    generate_exercises(src, dst)
    assert check_exercises_in_sync(src, dst) == []
    (src / "ex09_gone.py").unlink()  # its generated exercise is now stale
    (dst / "ex01_dark_knowledge.py").write_text("# edited by hand\n")
    (dst / "ex02_kd_loss.py").unlink()
    (dst / "notes.py").write_text("# a file the generator did not write is left alone\n")
    problems = " ".join(check_exercises_in_sync(src, dst))
    assert "out of date" in problems and "missing" in problems and "stale" in problems
    assert "notes.py" not in problems
    generate_exercises(src, dst)  # regenerating fixes all three and removes the stale file
    assert check_exercises_in_sync(src, dst) == []
    assert not (dst / "ex09_gone.py").exists() and (dst / "notes.py").exists()


# --------------------------------------------------------------------------- command line

def test_cli_grade_exit_codes(capsys):
    assert grading.main([str(SOLUTIONS)]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "100.0%" in out and "kd_loss_matches_reference" in out
    assert grading.main([str(EXERCISES)]) == 0  # grading reports, it does not fail...
    assert "0.0%" in capsys.readouterr().out
    assert grading.main([str(EXERCISES), "--min-score", "0.5"]) == 1  # ...unless asked to
    assert grading.main(["grade", str(SOLUTIONS), "--min-score", "1.0"]) == 0
    capsys.readouterr()
    assert grading.main([str(SOLUTIONS), "--only", "ex02", "--min-score", "1"]) == 0
    out = capsys.readouterr().out
    assert "ex02_kd_loss" in out and "ex01_dark_knowledge" not in out
    assert grading.main([str(ROOT / "no-such-folder")]) == 2


def test_cli_sync_exit_codes(tmp_path, capsys):
    assert grading.main(["check-sync"]) == 0
    src, dst = tmp_path / "solutions", tmp_path / "exercises"
    shutil.copytree(SOLUTIONS, src)
    assert grading.main(["check-sync", "--src", str(src), "--dst", str(dst)]) == 1
    assert grading.main(["generate", "--src", str(src), "--dst", str(dst)]) == 0
    assert grading.main(["check-sync", "--src", str(src), "--dst", str(dst)]) == 0
    with (src / "ex01_dark_knowledge.py").open("a") as f:
        f.write("\n\ndef extra():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    assert grading.main(["check-sync", "--src", str(src), "--dst", str(dst)]) == 1
    assert "out of date" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    run = subprocess.run([sys.executable, "-m", "course_lib.grading", "exercises", "--min-score", "0.01"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "TOTAL" in run.stdout and "not implemented" in run.stdout


def test_a_hanging_answer_times_out(tmp_path):
    folder = mutant(tmp_path, {"ex01_dark_knowledge": [
        ("    return -plogp.sum(dim=-1)", "    while True:\n        pass")]})
    start = time.perf_counter()
    report = grade(folder, only="ex01", time_limit=0.2)
    assert time.perf_counter() - start < 10
    assert failed(report) == {"entropy_matches_reference", "entropy_limits", "entropy_grows_with_temperature"}
    assert all("timed out" in r.message for r in report.rows if r.check.startswith("entropy"))
