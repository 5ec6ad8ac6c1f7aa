"""The exercise generator (course_lib.grading.generate): solutions/ -> exercises/, the markers, the
sync check and its command line.
"""
from __future__ import annotations

import ast
import filecmp
import shutil

import pytest

from course_lib import grading
from course_lib.grading import MarkerError, check_exercises_in_sync, generate_exercises, strip_solutions
from course_lib.paths import exercises_dir, solutions_dir

SOLUTIONS = solutions_dir()
EXERCISES = exercises_dir()


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

        def docs(text):  # the docstrings (the task statements) survive unchanged; functions defined inside a
            # solution region are part of the answer, not tasks: only module- and class-level ones count
            tree = ast.parse(text)
            nodes = [*tree.body, *(n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body)]
            return {n.name: ast.get_docstring(n) for n in nodes if isinstance(n, ast.FunctionDef)}
        assert docs(solution) == docs(exercise)
        assert all(docs(solution).values())


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


def _squeezed(text: str) -> str:
    return "".join(text.split())


def test_no_stub_states_the_closed_form_it_asks_for():
    """A check module's CLOSED_FORMS names what a function asks students to derive; the generated stub
    (module docstring and the function's docstring) must not give it away, spaces ignored."""
    import importlib

    scanned = 0
    for path in sorted(exercises_dir().glob("ex*.py")):
        checks = importlib.import_module(f"course_lib.grading.checks.{path.stem}")
        forms = getattr(checks, "CLOSED_FORMS", {})
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {node.name: ast.get_docstring(node) or "" for node in tree.body if isinstance(node, ast.FunctionDef)}
        for function, expressions in forms.items():
            assert function in docs, f"{path.name}: CLOSED_FORMS names {function}, which the stub lacks"
            text = _squeezed((ast.get_docstring(tree) or "") + docs[function])
            for expression in expressions:
                assert _squeezed(expression) not in text, f"{path.name}: {function}'s stub states {expression!r}"
                scanned += 1
    assert scanned >= 4                                      # the scan has something to scan
    assert _squeezed("(p_s - p_t) / T") in _squeezed("gives (p_s -  p_t)/T here")   # and spaces do not hide it
