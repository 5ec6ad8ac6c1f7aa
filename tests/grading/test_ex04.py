"""The ex04 checks (DeiT: distillation token, hard and soft distillation, prediction) fail wrong
answers, and name their mistakes.

The generic tests (test_grader.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex04_deit.py with text replaced. A group breaks each
of the five functions at most once, so one child process grades up to five mistakes (about 3 s per
group), and a mistake in one function costs nothing in the others.
"""
from __future__ import annotations


import torch

from course_lib.grading.checks import randn
from course_lib.grading.checks import ex04_deit as checks
from course_lib.paths import solutions_dir
from _mutations import MutationTests, assert_inputs_modified, grade_text

MODULE = "ex04_deit"
SOLUTION = solutions_dir() / f"{MODULE}.py"

SEQUENCE = "return torch.cat([cls, dist, patch_tokens], dim=1) + pos_embed"
CE_CLASS = "ce_class = F.cross_entropy(class_logits, labels)"
CE_DIST = "ce_dist = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=-1))"
KL = "kl = (log_p_t.exp() * (log_p_t - log_p_dist)).sum(dim=-1).mean()"
PREDICTION = "return ((class_logits + dist_logits) / 2).argmax(dim=-1)"
FUSION = 'return "always_agree"'

# name: (function, [(old, new)], checks that must fail, text their messages must contain)
MUTATIONS = {
    "tokens_never_inserted": (  # the source article's wrapper: [class, patches], P + 1 tokens
        "insert_tokens", [(SEQUENCE, "return torch.cat([cls, patch_tokens], dim=1) + pos_embed[:, : p + 1]")],
        {"tokens_match_deit_embed", "tokens_order_and_positions"}, "the distillation token never inserted"),
    "tokens_dist_before_cls": (
        "insert_tokens", [(SEQUENCE, "return torch.cat([dist, cls, patch_tokens], dim=1) + pos_embed")],
        {"tokens_match_deit_embed", "tokens_order_and_positions"},
        "the distillation token before the class token"),
    "tokens_without_position_embedding": (
        "insert_tokens", [(SEQUENCE, "return torch.cat([cls, dist, patch_tokens], dim=1)")],
        {"tokens_match_deit_embed", "tokens_order_and_positions"}, "no position embedding"),
    "tokens_position_embedding_on_patches_only": (
        "insert_tokens", [(SEQUENCE, "return torch.cat([cls, dist, patch_tokens + pos_embed[:, 2:]], dim=1)")],
        {"tokens_match_deit_embed", "tokens_order_and_positions"}, "added to the patch tokens only"),
    "tokens_shapes_not_checked": (  # the ViT's [1, P + 1, D] then fails in the addition: RuntimeError
        "insert_tokens", [("if pos_embed.shape != (1, p + 2, d):", "if pos_embed.dim() != 3:")],
        {"tokens_reject_mismatched_shapes"}, "expected ValueError"),
    "hard_both_heads_on_labels": (
        "hard_distillation_loss", [(CE_DIST, "ce_dist = F.cross_entropy(dist_logits, labels)")],
        {"hard_matches_reference", "hard_heads_and_targets", "hard_gradients"}, "both heads trained on the labels"),
    "hard_class_head_distilled": (
        "hard_distillation_loss",
        [(CE_DIST, "ce_dist = F.cross_entropy(class_logits, teacher_logits.argmax(dim=-1))")],
        {"hard_matches_reference", "hard_heads_and_targets", "hard_gradients"},
        "the class head distilled instead of the distillation head"),
    "hard_heads_swapped": (
        "hard_distillation_loss",
        [(CE_CLASS, "ce_class = F.cross_entropy(dist_logits, labels)"),
         (CE_DIST, "ce_dist = F.cross_entropy(class_logits, teacher_logits.argmax(dim=-1))")],
        {"hard_matches_reference", "hard_heads_and_targets", "hard_gradients"}, "the heads swapped"),
    "hard_soft_teacher_targets": (
        "hard_distillation_loss", [(CE_DIST, "ce_dist = F.cross_entropy(dist_logits, teacher_logits.softmax(dim=-1))")],
        {"hard_matches_reference", "hard_heads_and_targets", "hard_gradients"}, "soft probabilities"),
    "hard_alpha_swapped": (
        "hard_distillation_loss",
        [("return (1 - alpha) * ce_class + alpha * ce_dist", "return alpha * ce_class + (1 - alpha) * ce_dist")],
        {"hard_matches_reference", "hard_heads_and_targets", "hard_gradients"}, "alpha and (1 - alpha) swapped"),
    "soft_without_tau_squared": (
        "soft_distillation_loss",
        [("return (1 - alpha) * ce + alpha * temperature ** 2 * kl", "return (1 - alpha) * ce + alpha * kl")],
        {"soft_matches_reference", "soft_limits_and_gradient"}, "a missing tau^2 factor"),
    "soft_reverse_kl": (
        "soft_distillation_loss", [(KL, "kl = (log_p_dist.exp() * (log_p_dist - log_p_t)).sum(dim=-1).mean()")],
        {"soft_matches_reference", "soft_limits_and_gradient"}, "the reverse KL"),
    "soft_kl_div_fed_probabilities": (  # a common mistake (the article passes log-probabilities)
        "soft_distillation_loss", [(KL, "kl = F.kl_div(log_p_dist.exp(), log_p_t.exp(), reduction='batchmean')")],
        {"soft_matches_reference", "soft_limits_and_gradient"}, "F.kl_div fed probabilities"),
    "soft_kl_div_sum": (
        "soft_distillation_loss", [(KL, "kl = F.kl_div(log_p_dist, log_p_t.exp(), reduction='sum')")],
        {"soft_matches_reference", "soft_limits_and_gradient"}, "reduction='sum'"),
    "soft_zero_temperature_accepted": (
        "soft_distillation_loss", [("if temperature <= 0:", "if temperature < 0:")],
        {"soft_rejects_nonpositive_temperature"}, "expected ValueError"),
    "prediction_class_head_only": (
        "average_heads_prediction", [(PREDICTION, "return class_logits.argmax(dim=-1)")],
        {"prediction_matches_mean_of_logits", "prediction_hand_example"}, "the class head only"),
    "prediction_mean_of_indices": (
        "average_heads_prediction",
        [(PREDICTION, "return (class_logits.argmax(dim=-1) + dist_logits.argmax(dim=-1)) / 2")],
        {"prediction_matches_mean_of_logits", "prediction_hand_example"},
        "the mean of the two heads' predicted indices"),
    "prediction_mean_of_indices_rounded_down": (
        "average_heads_prediction",
        [(PREDICTION, "return (class_logits.argmax(dim=-1) + dist_logits.argmax(dim=-1)) // 2")],
        {"prediction_matches_mean_of_logits", "prediction_hand_example"}, "rounded down"),
    "prediction_mean_of_probabilities": (
        "average_heads_prediction",
        [(PREDICTION, "return (class_logits.softmax(dim=-1) + dist_logits.softmax(dim=-1)).argmax(dim=-1)")],
        {"prediction_matches_mean_of_logits", "prediction_hand_example"}, "softmax probabilities"),
    "fusion_heads_disagree": (
        "two_class_fusion", [(FUSION, 'return "disagree_when_heads_disagree"')], {"fusion_two_classes"},
        "the rules still choose between the same two classes"),
    "fusion_confident_head": (
        "two_class_fusion", [(FUSION, 'return "disagree_when_one_head_is_confident"')], {"fusion_two_classes"},
        "each rule's choice reduces to a condition"),
    "fusion_not_a_key": (
        "two_class_fusion", [(FUSION, 'return "agree"')], {"fusion_two_classes"}, "return one of"),
}

GROUPS = [
    ["tokens_never_inserted", "hard_both_heads_on_labels", "soft_without_tau_squared", "prediction_class_head_only",
     "fusion_heads_disagree"],
    ["tokens_dist_before_cls", "hard_class_head_distilled", "soft_reverse_kl", "prediction_mean_of_indices",
     "fusion_confident_head"],
    ["tokens_without_position_embedding", "hard_heads_swapped", "soft_kl_div_fed_probabilities",
     "prediction_mean_of_probabilities", "fusion_not_a_key"],
    ["tokens_position_embedding_on_patches_only", "hard_soft_teacher_targets", "soft_kl_div_sum",
     "prediction_mean_of_indices_rounded_down"],
    ["tokens_shapes_not_checked", "hard_alpha_swapped", "soft_zero_temperature_accepted"],
]


class TestMutations(MutationTests):
    module = MODULE
    mutations = MUTATIONS
    groups = GROUPS
    points = {"insert_tokens": 5, "hard_distillation_loss": 5, "soft_distillation_loss": 5,
              "average_heads_prediction": 3, "two_class_fusion": 2}
    exactly = False


def test_the_token_reference_is_deits_embed_and_leaves_the_global_generator_alone():
    patches, cls, dist, pos = (randn(3, 9, 5, seed=1), randn(1, 1, 5, seed=2), randn(1, 1, 5, seed=3),
                               randn(1, 11, 5, seed=4))
    state = torch.get_rng_state()
    got = checks._deit_embed(patches, cls, dist, pos)
    assert torch.equal(torch.get_rng_state(), state)
    expected = torch.cat([cls.expand(3, -1, -1), dist.expand(3, -1, -1), patches], 1) + pos
    assert got.shape == (3, 11, 5) and torch.allclose(got, expected, atol=1e-6)
    for mistake, wrong in checks._token_mistakes(patches, cls, dist, pos).items():
        assert not torch.allclose(wrong, expected), mistake


def test_an_in_place_prediction_scores_zero_on_its_checks(tmp_path):
    text = SOLUTION.read_text().replace(PREDICTION, "return class_logits.add_(dist_logits).div_(2).argmax(dim=-1)")
    report = grade_text(tmp_path, MODULE, SOLUTION.name, text)
    rows = [r for r in report.rows if r.function == "average_heads_prediction"]
    assert_inputs_modified(report, MODULE, rows)
    assert report.earned == report.total - sum(r.points for r in rows)


def test_the_two_class_fusion_answer_is_true():
    """The derivation behind "always_agree": with C = 2 the two rules pick one class on every pair of heads."""
    zc, zd = randn(5000, 2, seed=5, scale=4.0), randn(5000, 2, seed=6, scale=4.0)
    by_logits = (zc + zd).argmax(-1)
    by_probabilities = (zc.softmax(-1) + zd.softmax(-1)).argmax(-1)
    assert torch.equal(by_logits, by_probabilities)
    zc, zd = randn(5000, 3, seed=5, scale=4.0), randn(5000, 3, seed=6, scale=4.0)   # C = 3: they can disagree
    assert not torch.equal((zc + zd).argmax(-1), (zc.softmax(-1) + zd.softmax(-1)).argmax(-1))
