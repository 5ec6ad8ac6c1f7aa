"""The ex03 checks (feature distillation) fail wrong answers, and name their mistakes.

The generic tests (test_grading.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex03_feature_distillation.py with text replaced.
A group breaks each of the three functions at most once, so one child process grades three
mistakes (about 3 s per group), and a mistake in one function costs nothing in the others.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from course_lib.grading import grade
from course_lib.grading_checks import CHECKS
from course_lib.paths import solutions_dir

MODULE = "ex03_feature_distillation"
SOLUTION = solutions_dir() / f"{MODULE}.py"

ADAPT = 'regressed = torch.einsum("ts,bshw->bthw", adapter_weight, student_features)\n'
COMPARE = "    return (regressed - teacher_features).pow(2).mean()"
HUBER = "F.smooth_l1_loss(psi_s, psi_t, beta=1.0)"

# name: (function, [(old, new)], checks that must fail, text their messages must contain)
MUTATIONS = {
    "attention_without_abs": (
        "attention_map", [("features.abs().pow(p)", "features.pow(p)")],
        {"attention_map_matches_reference", "attention_map_uses_absolute_values", "attention_map_properties"},
        "A**p without the absolute value"),
    "attention_not_normalised": (
        "attention_map", [("return F.normalize(q, dim=1)", "return q")],
        {"attention_map_matches_reference", "attention_map_properties"}, "no L2 normalisation"),
    "attention_normalised_over_the_batch": (
        "attention_map", [("return F.normalize(q, dim=1)", "return F.normalize(q, dim=0)")],
        {"attention_map_matches_reference"}, "normalising over the batch"),
    "hint_adapter_on_the_teacher_side": (  # the source article's direction, with W^T
        "hint_loss_with_adapter",
        [(ADAPT + COMPARE, 'regressed = torch.einsum("ts,bthw->bshw", adapter_weight, teacher_features)\n'
                           "    return (regressed - student_features).pow(2).mean()")],
        {"hint_matches_reference", "hint_adapter_maps_student_to_teacher", "hint_limits",
         "hint_gradient_reaches_the_adapter"}, "source article's direction"),
    "hint_weight_applied_to_the_teacher": (  # W [C_t, C_s] used as a teacher -> student conv: a shape error
        "hint_loss_with_adapter",
        [(ADAPT + COMPARE, "regressed = F.conv2d(teacher_features, adapter_weight[:, :, None, None])\n"
                           "    return (regressed - student_features).pow(2).mean()")],
        {"hint_adapter_maps_student_to_teacher"}, "the source article's adapter went the other way"),
    "hint_adapter_detached": (
        "hint_loss_with_adapter", [("adapter_weight, student_features)", "adapter_weight.detach(), student_features)")],
        {"hint_gradient_reaches_the_adapter"}, "never learn"),
    "hint_sum_not_mean": (
        "hint_loss_with_adapter", [(COMPARE, COMPARE.replace(".mean()", ".sum()"))],
        {"hint_matches_reference", "hint_limits"}, "sum of squared errors"),
    "rkd_without_mean_distance": (
        "rkd_distance_loss", [("psi_s, psi_t = d_s / (d_s.sum() / pairs), d_t / (d_t.sum() / pairs)", "psi_s, psi_t = d_s, d_t")],
        {"rkd_matches_reference", "rkd_invariances"}, "no division by the mean distance"),
    "rkd_squared_error": (
        "rkd_distance_loss", [(HUBER, "F.mse_loss(psi_s, psi_t)")],
        {"rkd_matches_reference"}, "squared error instead of the Huber"),
    "rkd_sqrt_of_zero": (
        "rkd_distance_loss",
        [("d_s = torch.linalg.vector_norm(s[:, None, :] - s[None, :, :], dim=-1)",
          "d_s = (s[:, None, :] - s[None, :, :]).pow(2).sum(-1).sqrt()")],
        {"rkd_gradient"}, "NaN"),
}

GROUPS = [["attention_without_abs", "hint_adapter_on_the_teacher_side", "rkd_without_mean_distance"],
          ["attention_not_normalised", "hint_adapter_detached", "rkd_sqrt_of_zero"],
          ["attention_normalised_over_the_batch", "hint_weight_applied_to_the_teacher", "rkd_squared_error"],
          ["hint_sum_not_mean"]]


def test_groups_cover_every_mutation_once_and_each_function_at_most_once():
    names = [n for g in GROUPS for n in g]
    assert sorted(names) == sorted(MUTATIONS)
    for group in GROUPS:
        functions = [MUTATIONS[n][0] for n in group]
        assert len(functions) == len(set(functions)), group
    checks = {c.name: c.function for c in CHECKS if c.module == MODULE}
    for name, (function, _, must_fail, _) in MUTATIONS.items():
        assert must_fail and all(checks[c] == function for c in must_fail), name


@pytest.mark.parametrize("group", GROUPS, ids="+".join)
def test_a_wrong_answer_loses_points_with_a_message_naming_its_mistake(tmp_path, group):
    text = SOLUTION.read_text()
    for name in group:
        for old, new in MUTATIONS[name][1]:
            assert text.count(old) == 1, f"mutation target not found once: {old!r}"
            text = text.replace(old, new)
    folder = tmp_path / "answer"
    folder.mkdir()
    (folder / SOLUTION.name).write_text(text)
    report = grade(folder, only=MODULE)
    failed = {r.check for r in report.rows if r.earned < r.points}
    for name in group:
        function, _, must_fail, hint = MUTATIONS[name]
        assert must_fail <= failed, (name, report.table(verbose=True))
        messages = " ".join(r.message for r in report.rows if r.check in must_fail)
        assert hint in messages, (name, messages)
    broken = {MUTATIONS[n][0] for n in group}
    intact = {c.name for c in CHECKS if c.module == MODULE and c.function not in broken}
    assert not intact & failed, report.table(verbose=True)
    assert not any(report.flags().values()), report.flags()


def test_an_in_place_attention_map_scores_zero_on_its_checks(tmp_path):
    folder = tmp_path / "answer"
    folder.mkdir()
    shutil.copy(SOLUTION, folder)
    path = Path(folder / SOLUTION.name)
    path.write_text(path.read_text().replace("features.abs().pow(p)", "features.abs_().pow(p)"))
    report = grade(folder, only=MODULE)
    rows = [r for r in report.rows if r.function == "attention_map"]
    assert rows and all(r.earned == 0 and "in place" in r.message for r in rows), report.table(verbose=True)
    assert report.flags() == {MODULE: ["inputs modified"]}
    assert report.earned == report.total - sum(r.points for r in rows)
