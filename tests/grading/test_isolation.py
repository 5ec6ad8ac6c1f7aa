"""The autograder against answers that cheat or misbehave (course_lib.grading, class mode).

One ``python -m course_lib.grading class`` run (a subprocess, so a grader that hung or died would
fail the test instead of the session) grades a submissions folder holding ``solutions/`` and
``exercises/`` as two students plus one student per way of cheating that the in-process grader
let through; each test reads that student's gradebook rows. Time is bounded by the grader's own
limits (a 3 s time limit here) and a generous subprocess timeout, never by a wall-clock assert.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib import grading
from course_lib.paths import exercises_dir, project_root, solutions_dir

pytestmark = pytest.mark.slow  # two class runs (~20 students, ex01 and ex02 only): about a minute on 2 cores

EX01, EX02 = "ex01_dark_knowledge", "ex02_kd_loss"
TIME_LIMIT = "3"


def _solution(module: str, edits: list[tuple[str, str]]) -> str:
    """The reference answer with each ``(old, new)`` replacement applied (each must apply once)."""
    text = (solutions_dir() / f"{module}.py").read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"edit target not found once in {module}: {old!r}"
        text = text.replace(old, new)
    return text


_STEAL = '''
import os
import sys


def _read(path):
    root = os.open("/", os.O_RDONLY)
    fd = os.open(path.lstrip("/"), os.O_RDONLY, dir_fd=root)
    return os.read(fd, 1 << 20).decode()


def _where():
{where}


try:
    exec(_read(_where()))
except Exception:
    pass
'''


def file_thieves(private: Path) -> dict[str, dict[str, str]]:
    """Students whose ex02 answer execs the reference answer it reads through a folder handle: the
    private solutions (their path known), the grader's command line in ``/proc`` (which names the
    ``--solutions`` folder), the repository's ``solutions/`` and another student's folder."""
    where = {
        "steal_private": f"    return {str(private / EX02)!r} + '.py'",
        "steal_via_proc": (
            "    pid = os.getppid()\n"
            "    for _ in range(4):  # the grader, or the unshare process in between\n"
            "        words = _read(f'/proc/{pid}/cmdline').split('\\0')\n"
            "        if '--solutions' in words:\n"
            "            return words[words.index('--solutions') + 1] + '/ex02_kd_loss.py'\n"
            "        status = _read(f'/proc/{pid}/status')\n"
            "        pid = int(status.split('PPid:')[1].split()[0])\n"
            "    raise LookupError"),
        "steal_repo": f"    return {str(solutions_dir() / EX02)!r} + '.py'",
        "steal_classmate": (
            "    mine = os.path.dirname(os.path.abspath(__file__))\n"
            "    return os.path.join(os.path.dirname(mine), 'solutions', 'ex02_kd_loss.py')"),
    }
    return {student: {EX02: _STEAL.format(where=code)} for student, code in where.items()}


def cheats(victim: Path, private: Path) -> dict[str, dict[str, str]]:
    """``{student: {module: source}}``: one student per way of cheating or misbehaving."""
    return {
        # The grader's reference through the call stack or sys.modules (20/20 in-process before).
        "frame_walker": {EX02: '''
import sys

LOSSES = "course" + "_lib.losses"  # built at run time: the static scan does not see it

def _reference():
    module = sys.modules.get(LOSSES)
    if module is not None:
        return module
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_globals.values()):
            if getattr(value, "__name__", "") == LOSSES:
                return value
        frame = frame.f_back
    return sys._getframe(2).f_globals["reference"]

def kd_loss(zs, zt, y, temperature, alpha):
    return _reference().kd_loss(zs, zt, y, temperature=temperature, alpha=alpha)

def reverse_kl(zs, zt, temperature):
    return _reference().soft_target_kl(zs, zt, temperature, direction="reverse").mean()

def kd_gradient(zs, zt, temperature):
    r = _reference()
    return (r.softmax_with_temperature(zs, temperature) - r.softmax_with_temperature(zt, temperature)) / temperature
'''},
        # course_lib by a name built at run time (full points for kd_loss before).
        "runtime_import": {EX02: _solution(EX02, [(
            "    ### BEGIN SOLUTION\n    log_ps = F.log_softmax(student_logits / temperature, dim=-1)\n"
            "    log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)\n    kl =",
            "    ### BEGIN SOLUTION\n    losses = __import__('course' + '_lib.losses', fromlist=['kd_loss'])\n"
            "    return losses.kd_loss(student_logits, teacher_logits, targets, temperature=temperature, alpha=alpha)\n"
            "    log_ps = F.log_softmax(student_logits / temperature, dim=-1)\n"
            "    log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)\n    kl =")])},
        "import_module_at_import": {EX01: '''
import importlib
_losses = importlib.import_module("".join(["cour", "se_l", "ib.losses"]))
softmax_with_temperature = _losses.softmax_with_temperature
entropy = _losses.entropy

def soft_target_similarity(probs, labels, num_classes):
    raise NotImplementedError
'''},
        # Replacing the grader's check runner through sys.modules (20/20, returning 0 everywhere).
        "sys_modules_patch": {EX01: '''
import sys
import torch

_grading = sys.modules.get("course" + "_lib.grading")
if _grading is not None:
    _grading._run_check = lambda c, *a, **k: (_grading.Row(c.module, c.name, c.function, c.points, c.points, "ok"), None)

def softmax_with_temperature(logits, temperature):
    return torch.zeros(())

def entropy(probs):
    return torch.zeros(())

def soft_target_similarity(probs, labels, num_classes):
    return torch.zeros(())
'''},
        # Ending the grader's process (the table was never printed, exit status 0).
        "exit_at_import": {EX01: _solution(EX01, []) + "\nimport sys\nsys.exit(0)\n"},
        "os_exit_in_function": {EX02: _solution(EX02, [(
            "    ### BEGIN SOLUTION\n    log_ps = F.log_softmax(student_logits / temperature, dim=-1)\n"
            "    log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)\n    kl =",
            "    ### BEGIN SOLUTION\n    import os\n    os._exit(0)\n"
            "    log_ps = F.log_softmax(student_logits / temperature, dim=-1)\n"
            "    log_pt = F.log_softmax(teacher_logits / temperature, dim=-1)\n    kl =")])},
        # Loops that catch the timeout exception (outlived a 0.2 s limit with full marks before).
        "timeout_at_import": {EX01: _solution(EX01, []) + '''
import time
while True:
    try:
        time.sleep(0.05)
    except BaseException:
        pass
'''},
        "timeout_in_function": {EX01: _solution(EX01, [(
            "    plogp = torch.where(",
            "    import time\n    while True:\n        try:\n            time.sleep(0.05)\n"
            "        except BaseException:\n            pass\n    plogp = torch.where(")])},
        # Dividing the caller's logits in place (passed before: every input was cloned).
        "inplace": {EX01: _solution(EX01, [(
            "    return torch.softmax(logits / temperature, dim=-1)",
            "    logits /= temperature\n    return torch.softmax(logits, dim=-1)")])},
        # Reading the reference answers through a folder handle (os.open(..., dir_fd=)): the audit hook
        # judged the relative path as if it were inside the scratch folder (20/20 before, no flag).
        **file_thieves(private),
        # A reply of 240 MB (four 60 MB tensors, each under the child's per-tensor limit): read whole,
        # it raised the grader's peak memory from 0.66 to 1.8 GB.
        "huge_reply": {EX01: _solution(EX01, [(
            "    return torch.softmax(logits / temperature, dim=-1)",
            "    return [torch.ones(15 * 2**20) for _ in range(4)]")])},
        # Allocating 50 GB.
        "memory_hog": {EX01: _solution(EX01, [(
            "    plogp = torch.where(",
            "    hog = torch.ones(50 * 10**9 // 4)\n    plogp = torch.where(")])},
        # The network, the grader's process and files outside the answer's scratch folder.
        "network": {EX02: _solution(EX02, [(
            "    return (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1).mean()",
            "    import socket\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
            "    return (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1).mean()")])},
        "attacks_grader": {EX01: _solution(EX01, [
            ("    if temperature <= 0:",
             "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    if temperature <= 0:"),
            ("    plogp = torch.where(",
             f"    open({str(victim)!r}, 'w').write('overwritten')\n    plogp = torch.where(")])},
    }


def _class_run(root: Path, students: dict[str, dict[str, str]], *extra: str):
    """``(rows by (student, exercise), stdout, submissions folder)`` of one ``class`` run with the
    course's solutions and exercises as two more students and a private copy of the solutions."""
    submissions = root / "submissions"
    shutil.copytree(solutions_dir(), submissions / "solutions")
    shutil.copytree(exercises_dir(), submissions / "exercises")
    shutil.copytree(solutions_dir(), root / "private")
    for student, files in students.items():
        (submissions / student).mkdir()
        for module, source in files.items():
            (submissions / student / f"{module}.py").write_text(source)
    out = root / "gradebook.csv"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    run = subprocess.run([sys.executable, "-m", "course_lib.grading", "class", str(submissions), "--out", str(out),
                          "--time-limit", TIME_LIMIT, "--solutions", str(root / "private"), *extra],
                         cwd=project_root(), env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    with out.open(newline="") as f:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(f)}
    return rows, run.stdout, submissions


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory):
    """``(rows, stdout, submissions folder, victim file)`` of one class run, at the strongest isolation here."""
    root = tmp_path_factory.mktemp("class")
    victim = root / "victim.txt"
    victim.write_text("untouched")
    return (*_class_run(root, cheats(victim, root / "private"), "--only", EX01, "--only", EX02), victim)


@pytest.fixture(scope="module")
def hook_only_gradebook(tmp_path_factory):
    """The file thieves again, with the grader told to use the audit hook only (no namespaces): the
    fallback on systems without user namespaces."""
    root = tmp_path_factory.mktemp("hook_only")
    return _class_run(root, file_thieves(root / "private"), "--isolation", "audit hook", "--only", EX02)


def row(gradebook, student, module):
    return gradebook[0][(student, module)]


def flags(gradebook, student, module) -> set[str]:
    return {f for f in row(gradebook, student, module)["flags"].split("; ") if f}


def full(module, *checks) -> list[int]:
    """The points the checks are worth (what an answer that passes them earns)."""
    from course_lib.grading.checks import CHECKS
    return [next(c.points for c in CHECKS if c.module == module and c.name == name) for name in checks]


def points(gradebook, student, module, *checks) -> list[int]:
    r = row(gradebook, student, module)
    return [int(r[c]) for c in checks]


# --------------------------------------------------------------------------- the course's own folders

def test_solutions_score_100_and_exercises_0(gradebook):
    rows = gradebook[0]
    for module in (EX01, EX02):
        assert rows[("solutions", module)]["percent"] == "100.0" and rows[("solutions", module)]["flags"] == ""
        assert rows[("exercises", module)]["percent"] == "0.0" and rows[("exercises", module)]["total"] == "0"
        assert rows[("exercises", module)]["max"] == "20"
    header = list(next(iter(rows.values())))
    assert header[:2] == ["student", "exercise"] and header[-5:] == ["total", "max", "percent", "flags", "isolation"]
    assert {"softmax_matches_reference", "kd_gradient_matches_autograd"} <= set(header)
    students = {s for s, _ in rows}
    assert students == {"solutions", "exercises", *cheats(Path("x"), Path("y"))}  # none stopped the run
    out = gradebook[1]
    assert out.index("Gradebook") < out.index("wrote ")


# --------------------------------------------------------------------------- each cheat scores 0 or is flagged

def test_reaching_the_reference_through_the_call_stack_scores_zero(gradebook):
    # it ran (no flag: nothing forbidden happened) and found no reference in the child
    assert row(gradebook, "frame_walker", EX02)["total"] == "0"
    assert flags(gradebook, "frame_walker", EX02) == set()


def test_importing_course_lib_by_a_name_built_at_run_time_is_flagged_and_zero(gradebook):
    for student, module in (("runtime_import", EX02), ("import_module_at_import", EX01)):
        assert row(gradebook, student, module)["total"] == "0", student
        # under namespaces course_lib does not exist for the answer (ModuleNotFoundError, no flag) unless
        # the import is made where the hook sees it first
        if student == "runtime_import" or row(gradebook, student, module)["isolation"] != grading.NAMESPACES:
            assert "forbidden import" in flags(gradebook, student, module), student


def test_patching_the_grader_through_sys_modules_has_no_effect(gradebook):
    assert row(gradebook, "sys_modules_patch", EX01)["total"] == "0"
    assert flags(gradebook, "sys_modules_patch", EX01) == set()


def test_exiting_is_flagged_and_the_run_goes_on(gradebook):
    assert row(gradebook, "exit_at_import", EX01)["total"] == "0"
    assert "exit" in flags(gradebook, "exit_at_import", EX01)
    assert "exit" in flags(gradebook, "os_exit_in_function", EX02)
    assert points(gradebook, "os_exit_in_function", EX02, "kd_loss_matches_reference", "kd_loss_is_forward_kl") == [0, 0]
    # the file's other functions are graded in a fresh process
    assert points(gradebook, "os_exit_in_function", EX02, "reverse_kl_matches_reference",
                  "kd_gradient_matches_autograd") == [2, 3]


def test_exiting_still_prints_the_table_and_fails_min_score(gradebook):
    """``sys.exit(0)`` in an answer made ``python -m course_lib.grading DIR --min-score 0.9`` exit 0
    without printing a table."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    run = subprocess.run([sys.executable, "-m", "course_lib.grading", str(gradebook[2] / "exit_at_import"),
                          "--only", "ex01", "--min-score", "0.9"], cwd=project_root(), env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "TOTAL" in run.stdout and "below --min-score" in run.stdout
    assert "[exit] the answer ended the process: SystemExit(0)" in run.stdout


def test_loops_that_catch_the_timeout_are_stopped(gradebook):
    assert row(gradebook, "timeout_at_import", EX01)["total"] == "0"
    assert "timeout" in flags(gradebook, "timeout_at_import", EX01)
    assert "timeout" in flags(gradebook, "timeout_in_function", EX01)
    assert points(gradebook, "timeout_in_function", EX01, "entropy_matches_reference", "entropy_limits",
                  "entropy_grows_with_temperature") == [0, 0, 0]
    assert points(gradebook, "timeout_in_function", EX01, "softmax_matches_reference", "similarity_hand_example") == [3, 3]


def test_modifying_the_inputs_in_place_is_flagged_and_zero(gradebook):
    assert "inputs modified" in flags(gradebook, "inplace", EX01)
    assert points(gradebook, "inplace", EX01, "softmax_matches_reference", "softmax_temperature_limits",
                  "softmax_is_stable_for_large_logits") == [0, 0, 0]
    assert points(gradebook, "inplace", EX01, "entropy_limits") == [3]


@pytest.mark.parametrize("which", ["gradebook", "hook_only_gradebook"])
def test_reading_reference_answers_through_a_folder_handle_scores_zero(which, request):
    """The private solutions, the grader's command line, the repository's solutions and a classmate's
    folder: each read through ``os.open(..., dir_fd=)`` scored 20/20 before. With namespaces none of
    those files exists for the answer (it finds nothing and scores 0); with the audit hook alone,
    opening a folder ends the child [sandbox]."""
    book = request.getfixturevalue(which)
    level = {r["isolation"] for r in book[0].values()}
    assert len(level) == 1
    if which == "hook_only_gradebook":
        assert level == {grading.HOOK_ONLY}
    else:
        assert level == {grading.isolation()}
    for student in file_thieves(Path("x")):
        assert row(book, student, EX02)["total"] == "0", (student, row(book, student, EX02))
        if level == {grading.HOOK_ONLY}:
            assert "sandbox" in flags(book, student, EX02), student
    assert f"isolation: {grading.ISOLATION_TEXT[level.pop()]}" in book[1]


def test_the_gradebook_names_the_isolation(gradebook):
    assert grading.isolation() in grading.ISOLATION_TEXT
    assert "isolation: " in gradebook[1]


def test_a_memory_hog_is_flagged_and_the_grader_survives(gradebook):
    assert "memory" in flags(gradebook, "memory_hog", EX01)
    assert points(gradebook, "memory_hog", EX01, "entropy_matches_reference") == [0]
    assert points(gradebook, "memory_hog", EX01, "softmax_matches_reference") == [3]


def test_a_reply_far_larger_than_the_call_is_not_read(gradebook):
    assert "memory" in flags(gradebook, "huge_reply", EX01)
    assert points(gradebook, "huge_reply", EX01, "softmax_matches_reference") == [0]
    assert points(gradebook, "huge_reply", EX01, "entropy_matches_reference") == full(EX01, "entropy_matches_reference")


def test_network_signals_and_outside_writes_are_stopped(gradebook):
    assert "network" in flags(gradebook, "network", EX02)
    assert points(gradebook, "network", EX02, "reverse_kl_matches_reference", "kd_loss_matches_reference") == [
        0, *full(EX02, "kd_loss_matches_reference")]
    assert "sandbox" in flags(gradebook, "attacks_grader", EX01)
    assert points(gradebook, "attacks_grader", EX01, "softmax_matches_reference", "entropy_limits",
                  "similarity_hand_example") == [0, 0, 3]
    assert gradebook[3].read_text() == "untouched"
