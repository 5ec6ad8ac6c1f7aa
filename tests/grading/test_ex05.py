"""The ex05 checks (born-again teacher, mutual-learning losses, ensemble prediction) fail wrong
answers, and name their mistakes; the model arguments and reports they rely on work.

The generic tests (test_grader.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex05_born_again.py with text replaced. A group breaks
each of the four functions at most once, so one child process grades up to four mistakes, and a
mistake in one function costs nothing in the others.
"""
from __future__ import annotations


import pytest
import torch
from torch import nn

from course_lib.grading import runner
from course_lib.grading.checks import build, module_arg
from course_lib.grading.checks import ex05_born_again as checks
from course_lib.online import ensemble_logits
from course_lib.paths import solutions_dir
from _mutations import MutationTests, assert_inputs_modified, grade_text

MODULE = "ex05_born_again"
SOLUTION = solutions_dir() / f"{MODULE}.py"

COPY = "teacher = copy.deepcopy(model)"
EVAL = "teacher.eval()"
FREEZE_LOOP = "for parameter in teacher.parameters():"
FREEZE = "parameter.requires_grad_(False)"
DETACH = "log_targets = log_p.detach()"
KL = "kls = [(log_targets[j].exp() * (log_targets[j] - log_p[i])).sum(dim=-1).mean() for j in range(k) if j != i]"
LOSS = "losses.append(ce + temperature ** 2 * torch.stack(kls).mean())"
STACK = "stacked = torch.stack(list(logits_list))"
SCORES = 'scores = stacked.softmax(dim=-1).mean(dim=0) if how == "probs" else stacked.mean(dim=0)'
PREDICT = "return scores.argmax(dim=-1)"
GRADIENT = "return temperature / b * (p - others)"
OTHERS = "others = (p.sum(dim=0, keepdim=True) - p) / (k - 1)"
SOFT_GRADIENT = {"soft_gradient_matches_autograd"}

TEACHER_CHECKS = {"teacher_is_a_new_module", "teacher_survives_reinitialising_the_original", "teacher_in_eval_mode",
                  "teacher_has_no_gradients", "original_left_unchanged"}
ENSEMBLE_VALUES = {"ensemble_matches_mean_probabilities", "ensemble_matches_mean_logits", "ensemble_hand_example"}

# name: (function, [(old, new)], checks that must fail, text their messages must contain)
MUTATIONS = {
    "teacher_is_the_model": (  # the known bug: teacher and student one module
        "frozen_teacher", [(COPY, "teacher = model")],
        {"teacher_is_a_new_module", "teacher_survives_reinitialising_the_original", "original_left_unchanged"},
        "the model itself returned"),
    "teacher_shallow_copy": (
        "frozen_teacher", [(COPY, "teacher = copy.copy(model)")],
        {"teacher_is_a_new_module", "teacher_survives_reinitialising_the_original", "original_left_unchanged"},
        "a shallow copy (copy.copy(model))"),
    "teacher_without_eval": (
        "frozen_teacher", [(EVAL, "pass")], {"teacher_in_eval_mode"}, "the copy is still in training mode"),
    "teacher_top_flag_only": (
        "frozen_teacher", [(EVAL, "teacher.training = False")], {"teacher_in_eval_mode"},
        "only the copy's own training flag"),
    "teacher_not_frozen": (  # detach() returns a new tensor: the parameter still requires grad
        "frozen_teacher", [(FREEZE, "parameter.detach()")], {"teacher_has_no_gradients"},
        "every parameter of the copy still requires grad"),
    "teacher_eval_on_the_original": (
        "frozen_teacher", [(COPY, "teacher = copy.deepcopy(model.eval())")], {"original_left_unchanged"},
        "eval() was called on the original model"),
    "teacher_freezes_the_original": (
        "frozen_teacher", [(FREEZE_LOOP, "for parameter in model.parameters():")],
        {"teacher_has_no_gradients", "original_left_unchanged"},
        "requires_grad_(False) was applied to the original model's parameters"),
    "mutual_peers_not_detached": (
        "mutual_learning_losses", [(DETACH, "log_targets = log_p")], {"mutual_gradients_stay_with_each_peer"},
        "the peers' distributions not detached"),
    "mutual_reverse_kl": (
        "mutual_learning_losses",
        [(KL, KL.replace("(log_targets[j].exp() * (log_targets[j] - log_p[i]))",
                         "(log_p[i].exp() * (log_p[i] - log_targets[j]))"))],
        {"mutual_losses_match_reference", "mutual_gradients_stay_with_each_peer"}, "the KL reversed"),
    "mutual_self_term_in_the_mean": (
        "mutual_learning_losses", [(KL, KL.replace(" if j != i]", "]"))],
        {"mutual_losses_match_reference", "mutual_gradients_stay_with_each_peer"},
        "dividing by K instead of K - 1"),
    "mutual_without_t_squared": (
        "mutual_learning_losses", [(LOSS, "losses.append(ce + torch.stack(kls).mean())")],
        {"mutual_losses_match_reference", "mutual_gradients_stay_with_each_peer"}, "a missing T^2 factor"),
    "mutual_sum_over_peers": (
        "mutual_learning_losses", [(LOSS, LOSS.replace(".mean())", ".sum())"))],
        {"mutual_losses_match_reference", "mutual_gradients_stay_with_each_peer"},
        "the sum over the peers instead of their mean"),
    "mutual_zero_temperature_accepted": (
        "mutual_learning_losses", [("if temperature <= 0:", "if temperature < 0:")], {"mutual_rejects_bad_inputs"},
        "temperature=0: expected ValueError"),
    "mutual_single_model_accepted": (  # torch.stack([]) then raises RuntimeError
        "mutual_learning_losses", [("if k < 2:", "if k < 1:")], {"mutual_rejects_bad_inputs"},
        "raised RuntimeError, expected ValueError"),
    "ensemble_majority_vote": (
        "ensemble_predict", [(PREDICT, "return torch.mode(stacked.argmax(dim=-1), dim=0).values")], ENSEMBLE_VALUES,
        "a majority vote of the members' predicted classes"),
    "ensemble_first_member_only": (
        "ensemble_predict", [(STACK, "stacked = logits_list[0].unsqueeze(0)")], ENSEMBLE_VALUES,
        "the first member only"),
    "ensemble_rules_swapped": (
        "ensemble_predict", [(SCORES, SCORES.replace('how == "probs"', 'how == "logits"'))], ENSEMBLE_VALUES,
        "(how='logits'"),
    "ensemble_always_mean_logits": (
        "ensemble_predict", [(SCORES, "scores = stacked.mean(dim=0)")],
        {"ensemble_matches_mean_probabilities", "ensemble_hand_example"}, "the mean of the logits (how='logits'"),
    "ensemble_mean_of_indices": (
        "ensemble_predict", [(PREDICT, "return stacked.argmax(dim=-1).float().mean(dim=0)")], ENSEMBLE_VALUES,
        "the mean of the members' predicted indices"),
    "ensemble_unknown_how_accepted": (
        "ensemble_predict", [('if how not in {"probs", "logits"}:', "if how is None:")],
        {"ensemble_rejects_bad_inputs"}, "how='mean': expected ValueError"),
    "ensemble_empty_list_accepted": (
        "ensemble_predict", [("if len(logits_list) == 0:", "if logits_list is None:")],
        {"ensemble_rejects_bad_inputs"}, "an empty list of members"),
    "gradient_of_the_kl_alone": (  # notebook 02's kd_gradient, without the soft term's T^2
        "mutual_soft_gradient", [(GRADIENT, "return (p - others) / temperature / b")], SOFT_GRADIENT,
        "the gradient of the KL alone"),
    "gradient_sign_flipped": (
        "mutual_soft_gradient", [(GRADIENT, "return temperature / b * (others - p)")], SOFT_GRADIENT,
        "a flipped sign"),
    "gradient_without_batch_mean": (
        "mutual_soft_gradient", [(GRADIENT, "return temperature * (p - others)")], SOFT_GRADIENT, "no batch mean"),
    "gradient_sum_over_peers": (  # zero where the peer is at the mean still holds: only the values tell
        "mutual_soft_gradient", [(GRADIENT, "return temperature / b * (k - 1) * (p - others)")], SOFT_GRADIENT,
        "the sum over the other peers instead of their mean"),
    "gradient_self_in_the_mean": (  # also zero at the peers' mean: only the values tell
        "mutual_soft_gradient", [(OTHERS, "others = p.mean(dim=0, keepdim=True)")], SOFT_GRADIENT,
        "dividing by K instead of K - 1"),
    "gradient_at_temperature_one": (
        "mutual_soft_gradient",
        [("p = torch.softmax(logits / temperature, dim=-1)", "p = torch.softmax(logits, dim=-1)")],
        SOFT_GRADIENT | {"soft_gradient_consequences"}, "the distributions at temperature 1"),
    "gradient_towards_one_peer": (  # pulled towards the next peer, not the mean of the others
        "mutual_soft_gradient", [(OTHERS, "others = p.roll(1, dims=0)")],
        SOFT_GRADIENT | {"soft_gradient_consequences"}, "peer 0's gradient (should be 0"),
}

GROUPS = [
    ["teacher_is_the_model", "mutual_peers_not_detached", "ensemble_majority_vote", "gradient_of_the_kl_alone"],
    ["teacher_shallow_copy", "mutual_reverse_kl", "ensemble_first_member_only", "gradient_sign_flipped"],
    ["teacher_without_eval", "mutual_self_term_in_the_mean", "ensemble_rules_swapped", "gradient_without_batch_mean"],
    ["teacher_top_flag_only", "mutual_without_t_squared", "ensemble_always_mean_logits", "gradient_sum_over_peers"],
    ["teacher_not_frozen", "mutual_sum_over_peers", "ensemble_mean_of_indices", "gradient_self_in_the_mean"],
    ["teacher_eval_on_the_original", "mutual_zero_temperature_accepted", "ensemble_unknown_how_accepted",
     "gradient_at_temperature_one"],
    ["teacher_freezes_the_original", "mutual_single_model_accepted", "ensemble_empty_list_accepted",
     "gradient_towards_one_peer"],
]


class TestMutations(MutationTests):
    module = MODULE
    mutations = MUTATIONS
    groups = GROUPS
    points = {"frozen_teacher": 6, "mutual_learning_losses": 6, "ensemble_predict": 4, "mutual_soft_gradient": 4}


def test_answers_that_modify_their_inputs_in_place_score_zero_on_those_checks(tmp_path):
    """The model's values (a teacher that zeroes the student) and a list of tensors (shifted logits)
    are guarded like tensors: zero on every check of the function, flagged."""
    text = SOLUTION.read_text()
    text = text.replace(EVAL, EVAL + "\n    for p in model.parameters():\n        p.data.zero_()")
    text = text.replace(STACK, "stacked = torch.stack([z.sub_(z.amax(dim=-1, keepdim=True)) for z in logits_list])")
    report = grade_text(tmp_path, MODULE, SOLUTION.name, text)
    for function in ("frozen_teacher", "ensemble_predict"):
        rows = [r for r in report.rows if r.function == function and r.check != "ensemble_rejects_bad_inputs"]
        assert_inputs_modified(report, MODULE, rows)
    teacher = next(r for r in report.rows if r.check == "teacher_is_a_new_module")
    assert "the values of 0.weight" in teacher.message, teacher.message
    ensemble = next(r for r in report.rows if r.check == "ensemble_matches_mean_logits")
    assert "argument 1: item 0" in ensemble.message, ensemble.message
    assert all(r.earned == r.points for r in report.rows if r.function == "mutual_learning_losses")


# --------------------------------------------------------------------------- the references and the inputs

def test_mutual_reference_is_the_formula_and_its_mistakes_are_told_apart():
    cases = [(1100, (2, 8, 10), 1.0), (1104, (3, 8, 10), 2.0), (1108, (4, 1, 5), 4.0), (1112, (3, 16, 100), 1.5),
             (1116, (5, 6, 3), 0.5)]
    told_apart: set[str] = set()
    for seed, (k, b, c), t in cases:  # the inputs of mutual_losses_match_reference
        z, y = checks._peers_batch(seed, k, b, c)
        expected = checks._mutual_reference(z, y, t)
        assert expected.shape == (k,)
        assert torch.allclose(expected, checks._mutual_formula(z, y, t), atol=1e-6)
        for mistake, wrong in checks._mutual_mistakes(z, y, t).items():
            if not torch.allclose(wrong, expected, atol=1e-4, rtol=1e-3):
                told_apart.add(mistake)
    assert told_apart == set(checks._mutual_mistakes(z, y, t)), set(checks._mutual_mistakes(z, y, t)) - told_apart
    # MutualLearning's peers are detached: loss i reaches only z_i; without detaching it reaches the others
    z, y = checks._peers_batch(1200, 3, 6, 7)
    one_hot = torch.tensor([0.0, 1.0, 0.0])
    grad = checks._reference_grad(z, y, 2.0, one_hot)
    assert grad[1].abs().sum() > 0 and grad[[0, 2]].abs().sum() == 0
    assert checks._reference_grad(z, y, 2.0, one_hot, detach=False)[[0, 2]].abs().sum() > 0


class _Fixed(nn.Module):
    """A "model" whose logits on input row i are row i of a fixed table (for ensemble_logits)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, x):
        return self.table[x.long()]


def test_ensemble_reference_is_course_libs_and_its_mistakes_are_told_apart():
    told_apart: dict[str, set[str]] = {"probs": set(), "logits": set()}
    for seed, (m, n, c) in [(1500, (3, 200, 10)), (1510, (2, 300, 4)), (1520, (5, 100, 10)), (1600, (3, 200, 10))]:
        members = checks._members(seed, m, n, c)
        x = torch.arange(n).float()
        for how in ("probs", "logits"):
            expected = checks._ensemble_reference(members, how)
            assert torch.equal(expected, ensemble_logits([_Fixed(z) for z in members], x, how).argmax(-1))
            for mistake, wrong in checks._ensemble_mistakes(members, how).items():
                if not torch.equal(wrong.double(), expected.double()):
                    told_apart[how].add(mistake)
        if m == 3:  # probability and logit rules disagree on a good share of the examples
            disagree = (checks._ensemble_reference(members, "probs") != checks._ensemble_reference(members, "logits"))
            assert disagree.float().mean() > 0.05
    for how, found in told_apart.items():
        assert found == set(checks._ensemble_mistakes(members, how)), how


def test_the_hand_example_is_as_its_comment_says():
    stacked = torch.stack(checks.HAND)
    votes = stacked.argmax(-1)
    assert votes[:, 0].tolist() == [1, 1, 2] and votes[:, 1].tolist() == [0, 1, 1]
    assert checks._ensemble_reference(checks.HAND, "probs").tolist() == [2, 1]
    assert checks._ensemble_reference(checks.HAND, "logits").tolist() == [3, 1]
    x = torch.arange(2).float()
    assert ensemble_logits([_Fixed(z) for z in checks.HAND], x, "probs").argmax(-1).tolist() == [2, 1]


# --------------------------------------------------------------------------- model arguments and reports

def test_module_args_are_deterministic_and_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    a, b = module_arg(checks.MLP, 3), module_arg(checks.MLP, 3, training=False, frozen=("0.weight",))
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb = a["__module__"]["state"], b["__module__"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    model, frozen = build(a), build(b)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(m.training for m in frozen.modules())
    assert [n for n, p in frozen.named_parameters() if not p.requires_grad] == ["0.weight"]
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(model(x), frozen(x))   # BatchNorm and Dropout: the mode matters
    with pytest.raises(ValueError, match="unknown layer"):
        runner.build_layers(torch, [["Linear", [2, 2]], ["Module", []]])


def test_module_reports_and_what_an_answer_cannot_forge():
    model = build(module_arg(checks.CNN, 5))
    report = runner.module_report(torch, model)["__module__"]
    assert report["id"] == id(model) and report["training"][""] is True
    assert set(report["state"]) == set(model.state_dict()) and set(report["requires_grad"]) == {
        n for n, _ in model.named_parameters()}
    assert report["storage"]["0.weight"] == model[0].weight.untyped_storage().data_ptr()
    assert runner.encode(torch, model).keys() == {"__module__"}
    forged = {"__module__": {"id": 1, "training": {}, "requires_grad": {}, "state": {}, "storage": {}}}
    assert runner.encode(torch, forged) == {"__opaque__": "builtins.dict"}
    # the probe: a deep copy's outputs survive re-initialising the original, a shallow copy's do not
    import copy
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    for make, same in ((copy.deepcopy, True), (copy.copy, False)):
        original = build(module_arg(checks.CNN, 6))
        probe = runner.probe_module(torch, make(original), [original], x)
        assert torch.equal(probe["before"], probe["after"]) == same


def test_a_gradient_through_wrong_losses_says_to_fix_them_first(tmp_path):
    """An answer that differentiates its own mutual_learning_losses: right losses, full points; losses
    without the T^2, the KL-alone mistake named and "fix it first"."""
    by_autograd = """y = torch.zeros(logits.shape[1], dtype=torch.long)
    z = logits.detach().clone().requires_grad_(True)
    ce = torch.stack([F.cross_entropy(z[i], y) for i in range(z.shape[0])])
    (g,) = torch.autograd.grad((mutual_learning_losses(z, y, temperature) - ce).sum(), z)
    return g"""
    text = SOLUTION.read_text().replace(GRADIENT, by_autograd)
    report = grade_text(tmp_path, MODULE, SOLUTION.name, text)
    assert report.earned == report.total, report.table(verbose=True)
    (tmp_path / "wrong").mkdir()
    report = grade_text(tmp_path / "wrong", MODULE, SOLUTION.name,
                        text.replace(LOSS, "losses.append(ce + torch.stack(kls).mean())"))
    row = next(r for r in report.rows if r.check == "soft_gradient_matches_autograd")
    assert row.earned == 0 and "the gradient of the KL alone" in row.message and "fix it first" in row.message, row
