"""The autograder (course_lib.grading: grader, report, cli): the course's own folders, mutations,
the static scan, the command line. The generator is in test_generate.py.

Grading runs each answer file in a child process (about 2 s each, mostly importing torch), so the
reference folders are graded once per module (fixtures) and mutations are grouped, several per
file. The cheats the in-process grader let through are in test_isolation.py.
"""
from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

from course_lib import grading
from course_lib.grading import CHECKS, grade, grader
from course_lib.paths import exercises_dir, project_root, solutions_dir

ROOT = project_root()
SOLUTIONS = solutions_dir()
EXERCISES = exercises_dir()
MODULES = sorted({c.module for c in CHECKS})


def failed(report) -> set[str]:
    return {r.check for r in report.rows if r.earned < r.points}


def mutant(tmp_path: Path, edits: dict[str, list[tuple[str, str]]], name: str = "mutant") -> Path:
    """A copy of solutions/ with each ``(old, new)`` text replacement applied (each must apply once)."""
    folder = tmp_path / name
    shutil.copytree(SOLUTIONS, folder)
    for module, replacements in edits.items():
        path = folder / f"{module}.py"
        text = path.read_text()
        for old, new in replacements:
            assert text.count(old) == 1, f"mutation target not found once in {module}: {old!r}"
            text = text.replace(old, new)
        path.write_text(text)
    return folder


@pytest.fixture(scope="module")
def solutions_report():
    return grade(SOLUTIONS)


@pytest.fixture(scope="module")
def stubs_report():
    return grade(EXERCISES)


# --------------------------------------------------------------------------- the course's own folders

def test_solutions_get_full_marks(solutions_report):
    report = solutions_report
    assert report.earned == report.total == 20 * len(MODULES), report.table(verbose=True)
    assert report.fraction == 1.0
    assert set(report.by_module()) == set(MODULES)
    assert report.by_module() == {m: (20, 20) for m in MODULES}     # every exercise file is worth 20
    assert all(not f for f in report.flags().values())


def test_every_graded_module_has_at_least_two_exercises_and_checks():
    for module in MODULES:
        functions = {c.function for c in CHECKS if c.module == module}
        assert len(functions) >= 2, module
        assert all(c.points > 0 for c in CHECKS if c.module == module)
    names = [(c.module, c.name) for c in CHECKS]
    assert len(names) == len(set(names)), "check names must be unique within a module"


def test_stubs_score_exactly_zero(stubs_report, solutions_report):
    report = stubs_report
    assert report.total == solutions_report.total
    assert report.earned == 0, report.table(verbose=True)
    graded = [r for r in report.rows if r.points]
    assert graded and all(r.message.startswith("not implemented") for r in graded), report.table()


def test_answers_never_run_in_the_graders_process(solutions_report, stubs_report):
    answers = {str(p.resolve()) for folder in (SOLUTIONS, EXERCISES) for p in folder.glob("*.py")}
    loaded = {str(Path(m.__file__).resolve()) for m in list(sys.modules.values())
              if isinstance(getattr(m, "__file__", None), str)}
    assert not answers & loaded


def test_the_child_runner_imports_only_the_standard_library_and_torch():
    tree = ast.parse(grading.RUNNER.read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" in names and names <= set(sys.stdlib_module_names) | {"torch"}, names


def test_only_selects_modules_and_relative_folders_work(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")  # where a notebook's self-check cell runs
    report = grade("../solutions", only="ex01")
    assert set(report.by_module()) == {"ex01_dark_knowledge"}
    assert report.fraction == 1.0, report.table(verbose=True)
    with pytest.raises(ValueError):
        grade(SOLUTIONS, only="ex99")
    markdown = report._repr_markdown_()  # what a notebook cell ending in grade(...) shows
    assert markdown.startswith("| check | points | earned | message |") and "**100.0%**" in markdown
    assert str(report) == repr(report) == report.table()


def test_a_patch_of_the_grader_from_an_answer_does_not_reach_the_kernel(tmp_path):
    """An answer that replaces the check runner through sys.modules (20/20 before, and the patch stayed)."""
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "ex01_dark_knowledge.py").write_text(
        "import sys\nimport torch\n"
        "for name in ('course' + '_lib.grading', 'course' + '_lib.grading.grader'):\n"
        "    g = sys.modules.get(name)\n"
        "    if g is not None:\n"
        "        g._run_check = lambda c, *a, **k: (g.Row(c.module, c.name, c.function, c.points, c.points, 'ok'), None)\n"
        "        g.grade = None\n"
        "def softmax_with_temperature(z, t):\n    return torch.zeros(())\n"
        "def entropy(p):\n    return torch.zeros(())\n"
        "def soft_target_similarity(p, y, c):\n    return torch.zeros(())\n")
    before = (grader._run_check, grader.grade, grading.grade)
    report = grade(folder, only="ex01")
    assert report.earned == 0, report.table(verbose=True)
    assert (grader._run_check, grader.grade, grading.grade) == before


# --------------------------------------------------------------------------- the checks can fail

TARGET_ENTROPY = "h = -(torch.softmax(z / t, dim=-1) * torch.log_softmax(z / t, dim=-1)).sum(-1).mean().item()"

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
    "kd_loss_not_differentiable": (
        {"ex02_kd_loss": [("return alpha * temperature ** 2 * kl + (1 - alpha) * ce",
                           "return (alpha * temperature ** 2 * kl + (1 - alpha) * ce).detach()")]},
        {"kd_loss_gradient_scale_is_temperature_independent", "kd_loss_is_differentiable"}, "differentiabl"),
    "reverse_kl_is_forward": (
        {"ex02_kd_loss": [("return (log_ps.exp() * (log_ps - log_pt))", "return (log_pt.exp() * (log_pt - log_ps))")]},
        {"reverse_kl_matches_reference", "reverse_kl_properties"}, "forward KL"),
    "kd_gradient_sign_flipped": (
        {"ex02_kd_loss": [("return (p_s - p_t) / temperature", "return (p_t - p_s) / temperature")]},
        {"kd_gradient_matches_autograd", "kd_gradient_high_temperature_limit"}, "sign"),
    "kd_gradient_without_1_over_T": (
        {"ex02_kd_loss": [("return (p_s - p_t) / temperature", "return p_s - p_t")]},
        {"kd_gradient_matches_autograd", "kd_gradient_high_temperature_limit"}, "1/T"),
    "logit_matching_uncentred": (
        {"ex02_kd_loss": [("    d = d - d.mean(dim=-1, keepdim=True)\n", "")]},
        {"logit_matching_limit_matches_reference"}, "zero-mean formula"),
    "logit_matching_without_the_half": (
        {"ex02_kd_loss": [("return (d ** 2).sum(dim=-1) / (2 * d.shape[-1])", "return (d ** 2).mean(dim=-1)")]},
        {"logit_matching_limit_matches_reference", "logit_matching_limit_consequences"}, "twice too large"),
    "softmax_ignores_temperature": (
        {"ex01_dark_knowledge": [("torch.softmax(logits / temperature, dim=-1)", "torch.softmax(logits, dim=-1)")]},
        {"softmax_matches_reference", "softmax_temperature_limits"}, "temperature ignored"),
    "softmax_multiplies_by_temperature": (
        {"ex01_dark_knowledge": [("torch.softmax(logits / temperature, dim=-1)", "torch.softmax(logits * temperature, dim=-1)")]},
        {"softmax_matches_reference", "softmax_temperature_limits"}, "multiplied by T"),
    "softmax_accepts_zero_temperature": (
        {"ex01_dark_knowledge": [("if temperature <= 0:", "if temperature < 0:")]},
        {"softmax_rejects_nonpositive_temperature"}, "ValueError"),
    "softmax_overflows": (
        {"ex01_dark_knowledge": [("return torch.softmax(logits / temperature, dim=-1)",
                                  "e = torch.exp(logits / temperature)\n    return e / e.sum(-1, keepdim=True)")]},
        {"softmax_is_stable_for_large_logits"}, "shift each row by its largest logit"),
    "entropy_in_bits": (
        {"ex01_dark_knowledge": [("probs * torch.log(probs)", "probs * torch.log2(probs)")]},
        {"entropy_matches_reference", "entropy_limits", "entropy_grows_with_temperature"}, "bits"),
    "entropy_0_log_0_is_nan": (
        {"ex01_dark_knowledge": [("torch.where(probs > 0, probs * torch.log(probs), torch.zeros_like(probs))",
                                  "probs * torch.log(probs)")]},
        {"entropy_limits"}, "leave the zero entries out"),
    "entropy_without_the_minus": (
        {"ex01_dark_knowledge": [("return -plogp.sum(dim=-1)", "return plogp.sum(dim=-1)")]},
        {"entropy_matches_reference", "entropy_limits"}, "without the minus sign"),
    "similarity_divides_by_N": (
        {"ex01_dark_knowledge": [("sums / counts.clamp_min(1).unsqueeze(1)", "sums / len(labels)")]},
        {"similarity_hand_example", "similarity_properties"}, "number of examples N"),
    "similarity_transposed": (
        {"ex01_dark_knowledge": [("return sums / counts.clamp_min(1).unsqueeze(1)",
                                  "return (sums / counts.clamp_min(1).unsqueeze(1)).T")]},
        {"similarity_hand_example", "similarity_properties"}, "the transpose"),
    "temperature_in_bits": (
        {"ex01_dark_knowledge": [(TARGET_ENTROPY, TARGET_ENTROPY.replace(".mean().item()",
                                                                         ".mean().item() / math.log(2)"))]},
        {"temperature_reaches_the_target_entropy"}, "in bits"),
    "temperature_of_the_mean_soft_target": (
        {"ex01_dark_knowledge": [(TARGET_ENTROPY, "h = torch.special.entr(torch.softmax(z / t, dim=-1).mean(0))"
                                                  ".sum().item()")]},
        {"temperature_reaches_the_target_entropy"}, "entropy of the mean soft target"),
    "temperature_inverted": (
        {"ex01_dark_knowledge": [("return math.exp((lo + hi) / 2)", "return math.exp(-(lo + hi) / 2)")]},
        {"temperature_reaches_the_target_entropy", "temperature_follows_the_logits_scale"}, "1/T"),
}


def _function_of(name: str) -> tuple[str, str]:
    """The (module, function) a mutation breaks: that of the checks it must fail."""
    found = {(c.module, c.function) for c in CHECKS if c.name in MUTATIONS[name][1]}
    assert len(found) == 1, (name, found)
    return found.pop()


def _groups() -> list[list[str]]:
    """Mutations grouped so that a group breaks each function at most once (one child per group)."""
    groups: list[list[str]] = []
    for name in MUTATIONS:
        module, function = _function_of(name)
        for group in groups:
            if _function_of(group[0])[0] == module and function not in {_function_of(n)[1] for n in group}:
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # F.kl_div's own hint
@pytest.mark.parametrize("group", _groups(), ids="+".join)
def test_a_wrong_solution_loses_points(tmp_path, group):
    module = _function_of(group[0])[0]
    edits = [edit for name in group for edit in MUTATIONS[name][0][module]]
    report = grade(mutant(tmp_path, {module: edits}), only=module)
    broken = {_function_of(name)[1] for name in group}
    for name in group:
        _, must_fail, hint = MUTATIONS[name]
        assert must_fail <= failed(report), (name, report.table(verbose=True))
        if hint:
            messages = " ".join(r.message for r in report.rows if r.check in must_fail)
            assert hint in messages, (name, messages)
    # a mistake in one function costs nothing in the others
    intact = {c.name for c in CHECKS if c.module == module and c.function not in broken}
    assert not intact & failed(report), report.table(verbose=True)
    assert not any(report.flags().values()), report.flags()


def test_a_wrong_entropy_is_named_where_temperature_for_entropy_calls_it(tmp_path):
    """fix_first: an answer whose temperature_for_entropy calls its own (wrong) entropy is told to fix that first."""
    folder = mutant(tmp_path, {"ex01_dark_knowledge": [
        ("probs * torch.log(probs)", "probs * torch.log2(probs)"),
        (TARGET_ENTROPY, "h = entropy(softmax_with_temperature(z, t)).mean().item()")]})
    report = grade(folder, only="ex01")
    row = next(r for r in report.rows if r.check == "temperature_reaches_the_target_entropy")
    assert row.earned == 0 and "in bits" in row.message, row.message
    assert "your entropy(tensor([0.5000, 0.5000])) is wrong too" in row.message and "fix it first" in row.message


@pytest.mark.parametrize("line", [
    "from course_lib.losses import kd_loss as _reference_kd_loss",
    "import course_lib.losses",
    "from course_lib import losses",
    "_ref = __import__('importlib').import_module('course_lib.losses')",
])
def test_using_course_lib_scores_zero_for_that_file(tmp_path, line):
    folder = mutant(tmp_path, {"ex02_kd_loss": [("import torch\n", f"import torch\n{line}\n")]})
    report = grade(folder, only="ex02")  # the static scan: no process is started
    earned, total = report.by_module()["ex02_kd_loss"]
    assert earned == 0 and total > 0
    assert all("course_lib" in r.message for r in report.rows if r.module == "ex02_kd_loss")
    assert report.flags() == {"ex02_kd_loss": ["forbidden import"]}


def test_broken_or_missing_files_are_reported_not_raised(tmp_path):
    folder = mutant(tmp_path, {"ex01_dark_knowledge": [("import torch\n", "import torch\ndef broken(:\n")]})
    (folder / "ex02_kd_loss.py").unlink()
    report = grade(folder, only=["ex01", "ex02"])
    assert report.earned == 0
    messages = {r.module: r.message for r in report.rows if r.points == 0}
    assert "SyntaxError" in messages["ex01_dark_knowledge"]
    assert "missing file" in messages["ex02_kd_loss"]
    assert report.flags() == {"ex01_dark_knowledge": ["syntax error"], "ex02_kd_loss": ["missing"]}


def test_a_crashing_or_printing_answer_only_loses_its_checks(tmp_path, capsys):
    folder = mutant(tmp_path, {"ex01_dark_knowledge": [
        ('    return -plogp.sum(dim=-1)', '    print("debug")\n    return {}["boom"]'),
        ("    ### BEGIN SOLUTION\n    if temperature <= 0:",
         "    ### BEGIN SOLUTION\n    if temperature <= 0:\n        print('T <= 0')\n        raise ZeroDivisionError")]})
    report = grade(folder, only="ex01")
    assert failed(report) == {"entropy_matches_reference", "entropy_limits", "entropy_grows_with_temperature",
                              "softmax_rejects_nonpositive_temperature"}
    assert all("KeyError" in r.message for r in report.rows if r.check.startswith("entropy"))
    entropy_row = next(r for r in report.rows if r.check == "entropy_limits")
    assert "boom" in entropy_row.message and 'return {}["boom"]' in entropy_row.details  # the child's traceback
    # the student's ZeroDivisionError reaches the check as one (its hint names it)
    assert "raised ZeroDivisionError" in next(r.message for r in report.rows if r.check.startswith("softmax_rejects"))
    out = capsys.readouterr()
    assert "debug" not in out.out + out.err and "T <= 0" not in out.out + out.err


# --------------------------------------------------------------------------- command line

def test_cli_grade_exit_codes(capsys):
    assert grading.main([str(SOLUTIONS), "--only", "ex02", "--min-score", "1"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "100.0%" in out and "kd_loss_matches_reference" in out
    assert "ex01_dark_knowledge" not in out
    # grading reports, it does not fail... unless asked to
    assert grading.main(["grade", str(EXERCISES), "--only", "ex01", "--min-score", "0.5"]) == 1
    assert "0.0%" in capsys.readouterr().out
    assert grading.main([str(ROOT / "no-such-folder")]) == 2


def test_class_gradebook_columns(tmp_path, capsys):
    submissions = tmp_path / "submissions"
    (submissions / "alice").mkdir(parents=True)
    (submissions / "bob").mkdir()
    shutil.copy(SOLUTIONS / "ex02_kd_loss.py", submissions / "alice")
    (submissions / "bob" / "ex02_kd_loss.py").write_text("import course_lib\n")
    out = tmp_path / "book" / "gradebook.csv"
    assert grading.main(["class", str(submissions), "--out", str(out), "--only", "ex02"]) == 0
    lines = out.read_text().splitlines()
    checks = [c.name for c in CHECKS if c.module == "ex02_kd_loss"]
    level = grading.isolation()
    assert lines[0] == ",".join(["student", "exercise", *checks, "total", "max", "percent", "flags", "isolation"])
    assert lines[1] == ",".join(["alice", "ex02_kd_loss", *(str(c.points) for c in CHECKS if c.name in checks),
                                 "20", "20", "100.0", "", level])
    assert lines[2] == ",".join(["bob", "ex02_kd_loss", *["0"] * len(checks), "0", "20", "0.0", "forbidden import",
                                 level])
    printed = capsys.readouterr().out
    assert "alice" in printed and "100.0%" in printed and "ex02: forbidden import" in printed
    assert grading.main(["class", str(tmp_path / "nobody"), "--out", str(out)]) == 2


def test_class_checks_solutions_kept_elsewhere(tmp_path, capsys):
    private = mutant(tmp_path, {}, name="private_solutions")  # an instructor's copy, outside the repository
    submissions = tmp_path / "submissions"
    (submissions / "carol").mkdir(parents=True)
    (submissions / "carol" / "ex02_kd_loss.py").write_text(
        f"exec(open({str(private / 'ex02_kd_loss.py')!r}).read())\n")  # copying from the private solutions
    out = tmp_path / "gradebook.csv"
    assert grading.main(["class", str(submissions), "--out", str(out), "--only", "ex02",
                         "--solutions", str(private)]) == 0
    assert "full marks" in capsys.readouterr().out
    row = out.read_text().splitlines()[1].split(",")
    # the hook stops the read at every level (under namespaces the file would not even exist for the answer)
    assert row[0] == "carol" and row[-5:] == ["0", "20", "0.0", "forbidden import", grading.isolation()]
    assert grading.main(["class", str(submissions), "--out", str(out), "--only", "ex02", "--solutions", str(private),
                         "--isolation", grading.HOOK_ONLY]) == 0
    row = out.read_text().splitlines()[1].split(",")
    assert row[0] == "carol" and row[-5:] == ["0", "20", "0.0", "forbidden import", grading.HOOK_ONLY]
    grading.set_isolation(None)
    # solutions that do not get full marks stop the run before any student is graded
    (private / "ex02_kd_loss.py").write_text((private / "ex02_kd_loss.py").read_text().replace(
        "return (p_s - p_t) / temperature", "return (p_t - p_s) / temperature"))
    assert grading.main(["class", str(submissions), "--out", str(tmp_path / "other.csv"), "--only", "ex02",
                         "--solutions", str(private)]) == 2
    assert not (tmp_path / "other.csv").exists()


# --------------------------------------------------------------------------- the terminal table

def test_the_table_shortens_the_numbers_never_the_hint():
    from course_lib.grading.report import MORE_DETAILS, GradeReport, Row, shorten

    hint = "that is what KLDivLoss's default reduction='mean' (divides by B*C, not B) gives"
    message = f"kd_loss at T=4, alpha=0.9 on a [16, 10] batch: expected 1.234567, got 0.123456 - {hint}"
    short = shorten(message, 72)
    assert short.endswith(" - " + hint) and "..." in short and short.startswith("kd_loss at T=4")
    assert shorten("short message - a hint", 72) == "short message - a hint"
    nested = "that is what the residual (the missing mass - min(p, q)) gives, drawn instead of p"  # a ' - ' inside
    short = shorten(f"K=4, V=8, drafts [4, 5, 5, 1], uniforms [0.574, 0.913]: got (2, ...) - {nested}", 72)
    assert short.endswith(" - " + nested) and short.startswith("K=4, V=8")
    numbers = "K=1, V=5, p[0] = q[0] * (1 - 2^-20) (p <= q everywhere), u_0 = 1 - 2^-24: NaN in the distribution"
    short = shorten(f"{numbers} - return p[i] instead of dividing by 0", 72)     # ' - ' in a number is not the hint
    assert short.endswith(" - return p[i] instead of dividing by 0") and "(1 - 2" in short
    plain = "x" * 100                                          # no hint: cut at the width
    assert shorten(plain, 72) == "x" * 69 + "..."
    rows = [Row("ex02_kd_loss", "kd_loss_value", "kd_loss", 3, 0, message), Row("ex02_kd_loss", "kd_loss_grad", "kd_loss", 2, 2, "ok")]
    table = GradeReport(Path("exercises"), rows).table()
    assert hint in table and table.rstrip().endswith(MORE_DETAILS)
    assert MORE_DETAILS not in GradeReport(Path("exercises"), rows).table(verbose=True)
    assert MORE_DETAILS not in GradeReport(Path("exercises"), rows[1:]).table()        # nothing failed
