"""The ex03 checks (feature distillation) fail wrong answers, and name their mistakes.

The generic tests (test_grader.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex03_feature_distillation.py with text replaced.
A group breaks each of the four functions at most once, so one child process grades four
mistakes (about 3 s per group), and a mistake in one function costs nothing in the others.
"""
from __future__ import annotations

from course_lib.paths import solutions_dir
from _mutations import MutationTests, assert_inputs_modified, grade_text

MODULE = "ex03_feature_distillation"
SOLUTION = solutions_dir() / f"{MODULE}.py"

ADAPT = 'regressed = torch.einsum("ts,bshw->bthw", adapter_weight, student_features)\n'
COMPARE = "    return (regressed - teacher_features).pow(2).mean()"
HUBER = "F.smooth_l1_loss(psi_s, psi_t, beta=1.0)"
CHOSEN = 'return "rkd_distance"'

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
    "embedding_loss_hint_mse": (
        "choose_embedding_loss", [(CHOSEN, 'return "hint_mse"')], {"embedding_loss_choice"}, "need a regressor"),
    "embedding_loss_hint_cosine": (
        "choose_embedding_loss", [(CHOSEN, 'return "hint_cosine"')], {"embedding_loss_choice"},
        "normalising removes the scale"),
    "embedding_loss_attention": (
        "choose_embedding_loss", [(CHOSEN, 'return "attention"')], {"embedding_loss_choice"}, "has no positions"),
    "embedding_loss_not_a_key": (
        "choose_embedding_loss", [(CHOSEN, 'return "RKD"')], {"embedding_loss_choice"}, "return one of"),
}

GROUPS = [["attention_without_abs", "hint_adapter_on_the_teacher_side", "rkd_without_mean_distance",
           "embedding_loss_hint_mse"],
          ["attention_not_normalised", "hint_adapter_detached", "rkd_sqrt_of_zero", "embedding_loss_hint_cosine"],
          ["attention_normalised_over_the_batch", "hint_weight_applied_to_the_teacher", "rkd_squared_error",
           "embedding_loss_attention"],
          ["hint_sum_not_mean", "embedding_loss_not_a_key"]]


class TestMutations(MutationTests):
    module = MODULE
    mutations = MUTATIONS
    groups = GROUPS
    points = {"attention_map": 6, "hint_loss_with_adapter": 6, "rkd_distance_loss": 6, "choose_embedding_loss": 2}
    exactly = False


def test_an_in_place_attention_map_scores_zero_on_its_checks(tmp_path):
    text = SOLUTION.read_text().replace("features.abs().pow(p)", "features.abs_().pow(p)")
    report = grade_text(tmp_path, MODULE, SOLUTION.name, text)
    rows = [r for r in report.rows if r.function == "attention_map"]
    assert_inputs_modified(report, MODULE, rows)
    assert report.earned == report.total - sum(r.points for r in rows)
