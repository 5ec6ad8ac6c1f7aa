"""The bad-input table (issue 22, part 4): every public function of the numerical API that the
notebooks and exercises use rejects NaN, empty, wrong-shape, wrong-dtype and out-of-range input
with a ValueError or TypeError whose message names the argument - no NaN, no raw torch error, no
silent result. ``test_good_arguments_give_a_finite_result`` runs each function's good arguments, so
the table cannot pass by rejecting everything. Then the helpers of ``course_lib.validation``."""
import math

import pytest
import torch
from torch import nn

from course_lib import analysis, compress, deit, engine, features, losses, online
from course_lib.llm import acceptance, losses as llm_losses
from course_lib import validation as v

NAN = float("nan")


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def with_nan(x):
    x = x.clone()
    x.view(-1)[0] = NAN
    return x


def probs(*shape, seed=0):
    return rand(*shape, seed=seed).softmax(-1)


def labels(*shape, classes=10, seed=1):
    return torch.randint(0, classes, shape, generator=torch.Generator().manual_seed(seed))


def _distilbert():
    return pytest.importorskip("course_lib.encoder", exc_type=ImportError)


# ------------------------------------------------------------------- good arguments, one set per function
# each entry: a callable taking keyword arguments, and a function giving fresh good keyword arguments

Z, ZT, Y = rand(4, 10), rand(4, 10, seed=1), labels(4)
S3, T3, Y3 = rand(2, 5, 7), rand(2, 5, 7, seed=1), labels(2, 5, classes=7)
_VALUES, _INDICES = llm_losses.topk_teacher_logits(T3, 3)
P, Q = probs(10), probs(10, seed=1)

GOOD = {
    "softmax_with_temperature": (losses.softmax_with_temperature, lambda: dict(logits=Z, temperature=2.0)),
    "entropy": (losses.entropy, lambda: dict(probs=probs(4, 10))),
    "soft_target_kl": (losses.soft_target_kl, lambda: dict(student_logits=Z, teacher_logits=ZT, temperature=2.0)),
    "kd_loss": (losses.kd_loss, lambda: dict(student_logits=Z, teacher_logits=ZT, targets=Y, temperature=4.0,
                                             alpha=0.9)),
    "check_kd_inputs": (losses.check_kd_inputs, lambda: dict(student_logits=Z, teacher_logits=ZT, targets=Y)),
    "token_kd_loss": (llm_losses.token_kd_loss, lambda: dict(student_logits=S3, teacher_logits=T3, labels=Y3,
                                                             alpha=0.5, temperature=2.0)),
    "token_divergence": (llm_losses.token_divergence, lambda: dict(student_logits=S3, teacher_logits=T3,
                                                                   divergence="jsd", temperature=2.0)),
    "shift_for_causal_lm": (llm_losses.shift_for_causal_lm, lambda: dict(logits=S3, labels=Y3)),
    "topk_teacher_logits": (llm_losses.topk_teacher_logits, lambda: dict(teacher_logits=T3, k=3)),
    "topk_mass": (llm_losses.topk_mass, lambda: dict(teacher_logits=T3, k=4, temperature=2.0)),
    "topk_divergence": (llm_losses.topk_divergence, lambda: dict(student_logits=S3, topk_values=_VALUES,
                                                                 topk_indices=_INDICES)),
    "topk_kd_loss": (llm_losses.topk_kd_loss, lambda: dict(student_logits=S3, topk_values=_VALUES,
                                                           topk_indices=_INDICES, labels=Y3, alpha=0.5)),
    "deit_loss": (deit.deit_loss, lambda: dict(class_logits=Z, dist_logits=rand(4, 10, seed=2), targets=Y,
                                               teacher_logits=ZT, alpha=0.5, temperature=2.0, hard=False)),
    "hint_loss": (features.hint_loss, lambda: dict(student=rand(2, 3, 4, 4), teacher=rand(2, 3, 4, 4, seed=1))),
    "attention_map": (features.attention_map, lambda: dict(features=rand(2, 3, 4, 4), p=2)),
    "attention_transfer_loss": (features.attention_transfer_loss,
                                lambda: dict(student_feats=[rand(2, 3, 4, 4)], teacher_feats=[rand(2, 5, 4, 4)])),
    "rkd_distance_loss": (features.rkd_distance_loss, lambda: dict(student=rand(4, 3), teacher=rand(4, 5, seed=1))),
    "rkd_angle_loss": (features.rkd_angle_loss, lambda: dict(student=rand(4, 3), teacher=rand(4, 5, seed=1))),
    "rkd_loss": (features.rkd_loss, lambda: dict(student=rand(4, 3), teacher=rand(4, 5, seed=1))),
    "rkd_objective": (features.rkd_objective, lambda: dict(teacher_embeddings=rand(8, 5))),
    "filtered_probs": (acceptance.filtered_probs, lambda: dict(logits=Z, temperature=0.7, top_k=5, top_p=0.9)),
    "greedy_accept": (acceptance.greedy_accept, lambda: dict(target_logits=rand(3, 10), drafts=torch.tensor([1, 2]))),
    "residual_distribution": (acceptance.residual_distribution, lambda: dict(p=P, q=Q)),
    "speculative_accept": (acceptance.speculative_accept,
                           lambda: dict(p=probs(3, 10), q=probs(2, 10, seed=1), drafts=torch.tensor([1, 2]))),
    "expected_acceptance": (acceptance.expected_acceptance, lambda: dict(p=P, q=Q)),
    "one_draft_outcome": (acceptance.one_draft_outcome, lambda: dict(p=P, drawn=Q)),
    "expected_tokens_per_call": (acceptance.expected_tokens_per_call, lambda: dict(alpha=0.7, k=4)),
    "expected_speedup": (acceptance.expected_speedup, lambda: dict(alpha=0.7, k=4, cost_ratio=0.1)),
    "required_acceptance": (acceptance.required_acceptance, lambda: dict(speedup=1.5, k=4, cost_ratio=0.1)),
    "entropy_vs_temperature": (analysis.entropy_vs_temperature, lambda: dict(logits=Z, temperatures=[0.5, 2])),
    "class_similarity": (analysis.class_similarity, lambda: dict(probs=probs(6, 3), labels=labels(6, classes=3),
                                                                 num_classes=3)),
    "most_similar_pairs": (analysis.most_similar_pairs, lambda: dict(similarity=probs(3, 3), classes="abc", k=2)),
    "mcnemar_test": (analysis.mcnemar_test, lambda: dict(correct_a=torch.tensor([1, 0, 1, 1]),
                                                         correct_b=torch.tensor([True, True, False, True]))),
    "mcnemar_exact": (analysis.mcnemar_exact, lambda: dict(b=3, c=1)),
    "mcnemar_bounds": (analysis.mcnemar_bounds, lambda: dict(correct_a=8, correct_b=6, n=10)),
    "combine_logits": (online.combine_logits, lambda: dict(logits=[Z, ZT], how="probs")),
    "mutual_learning": (online.mutual_learning, lambda: dict(temperature=2.0, weight=1.0)),
    "RunSpec": (engine.RunSpec, lambda: dict(name="kd", seed=0, temperature=4.0, alpha=0.9)),
    "logits_accuracy": (engine.logits_accuracy, lambda: dict(logits=Z, labels=Y)),
    "gaussian_logits": (llm_losses.gaussian_logits, lambda: dict(positions=torch.arange(8.0), mean=3.0, width=1.5)),
    "fit_gaussian_student": (llm_losses.fit_gaussian_student, lambda: dict(teacher_logits=rand(8), steps=2)),
    "onnx_parity": (compress.onnx_parity, lambda: dict(model=nn.Linear(3, 4), session=nn.Linear(3, 4),
                                                       x=rand(5, 3))),
    "hidden_cosine_loss": ("distilbert.hidden_cosine_loss",
                           lambda: dict(student_hidden=rand(2, 3, 4), teacher_hidden=rand(2, 3, 4, seed=1),
                                        attention_mask=torch.tensor([[1, 1, 0], [1, 0, 0]]))),
    "triple_loss": ("distilbert.triple_loss",
                    lambda: dict(student_logits=rand(4, 3), teacher_logits=rand(4, 3, seed=1), labels=labels(4, classes=3),
                                 student_hidden=rand(4, 3, 5), teacher_hidden=rand(4, 3, 5, seed=1),
                                 weights=(1.0, 1.0, 1.0))),
}


def _function(name):
    fn = GOOD[name][0]
    if isinstance(fn, str):                    # distilbert needs transformers: import it only when used
        module, attr = fn.split(".")
        fn = getattr(_distilbert(), attr)
    return fn


def _duplicated(indices):
    out = indices.clone()
    out[..., 1] = out[..., 0]
    return out


E = ValueError
# (function, replaced arguments, error, the message must match)  - the kind of bad input is in the id
BAD = [
    # ---- losses
    ("softmax_with_temperature", "nan", dict(logits=with_nan(Z)), E, "logits contains NaN"),
    ("softmax_with_temperature", "empty", dict(logits=rand(0, 10)), E, "logits is empty"),
    ("softmax_with_temperature", "no classes", dict(logits=rand(4, 0)), E, "logits must have a class"),
    ("softmax_with_temperature", "dtype", dict(logits=Y), TypeError, "logits must be a floating-point"),
    ("softmax_with_temperature", "T=0", dict(temperature=0.0), E, "temperature must be a finite number > 0"),
    ("softmax_with_temperature", "T=nan", dict(temperature=NAN), E, "temperature"),
    ("softmax_with_temperature", "T=bool", dict(temperature=True), TypeError, "temperature must be a number"),
    ("entropy", "nan", dict(probs=with_nan(probs(4, 10))), E, "probs contains NaN"),
    ("entropy", "empty", dict(probs=rand(0, 10)), E, "probs is empty"),
    ("entropy", "negative", dict(probs=torch.tensor([-0.5, 1.5])), E, "probs must hold probabilities"),
    ("entropy", "unnormalised", dict(probs=torch.tensor([2.0, 2.0])), E, "probs must sum to 1"),
    ("entropy", "logits", dict(probs=Z), E, "probs must"),
    ("entropy", "scalar", dict(probs=torch.tensor(1.0)), E, "probs must have at least 1 dimensions"),
    ("entropy", "eps<0", dict(eps=-0.1), E, "eps must be"),
    ("soft_target_kl", "T=0", dict(temperature=0.0), E, "temperature must be a finite number > 0"),
    ("soft_target_kl", "shape", dict(teacher_logits=rand(4, 9)), E, "student_logits and teacher_logits must have "
                                                                      "the same shape"),
    ("soft_target_kl", "nan", dict(teacher_logits=with_nan(ZT)), E, "teacher_logits contains NaN"),
    ("soft_target_kl", "empty", dict(student_logits=rand(0, 10), teacher_logits=rand(0, 10)), E,
     "student_logits is empty"),
    ("soft_target_kl", "direction", dict(direction="sideways"), E, "direction must be one of"),
    ("kd_loss", "empty batch", dict(student_logits=rand(0, 10), teacher_logits=rand(0, 10),
                                    targets=torch.zeros(0, dtype=torch.long)), E, "student_logits is empty"),
    ("kd_loss", "empty [2, 0, 10]", dict(student_logits=rand(2, 0, 10), teacher_logits=rand(2, 0, 10),
                                         targets=torch.zeros(2, 0, dtype=torch.long)), E, "student_logits is empty"),
    ("kd_loss", "no classes", dict(student_logits=rand(4, 0), teacher_logits=rand(4, 0), targets=None, alpha=1.0), E,
     "student_logits must have a class"),
    ("kd_loss", "nan", dict(teacher_logits=with_nan(ZT)), E, "teacher_logits contains NaN"),
    ("kd_loss", "targets dtype", dict(targets=Y.float()), TypeError, "targets must be integer class indices"),
    ("kd_loss", "targets range", dict(targets=torch.tensor([0, 1, 2, 10])), E, r"targets must be class indices in \[0, 10\)"),
    ("kd_loss", "targets shape", dict(targets=Y[:3]), E, "targets shape"),
    ("kd_loss", "alpha=2", dict(alpha=2.0), E, r"alpha must be a finite number in \[0, 1\]"),
    ("kd_loss", "alpha=nan", dict(alpha=NAN), E, "alpha"),
    ("kd_loss", "T<0", dict(temperature=-1.0), E, "temperature"),
    ("kd_loss", "smoothing", dict(label_smoothing=1.5), E, "label_smoothing"),
    ("kd_loss", "mask shape", dict(mask=torch.ones(3, dtype=torch.bool)), E, "mask must be a tensor of shape"),
    ("check_kd_inputs", "reduction", dict(reduction="batchmean"), E, "reduction must be one of"),
    # ---- llm_losses
    ("token_kd_loss", "nan", dict(teacher_logits=with_nan(T3)), E, "teacher_logits contains NaN"),
    ("token_kd_loss", "empty", dict(student_logits=rand(2, 0, 7), teacher_logits=rand(2, 0, 7),
                                    labels=torch.zeros(2, 0, dtype=torch.long)), E, "student_logits is empty"),
    ("token_kd_loss", "no classes", dict(student_logits=rand(2, 5, 0), teacher_logits=rand(2, 5, 0)), E,
     "student_logits must have a class"),
    ("token_kd_loss", "2-d", dict(student_logits=S3[0], teacher_logits=T3[0], labels=Y3[0]), E,
     r"student_logits must be \[batch, seq, vocab\]"),
    ("token_kd_loss", "T=0", dict(temperature=0.0), E, "temperature"),
    ("token_kd_loss", "alpha", dict(alpha=1.2), E, "alpha"),
    ("token_kd_loss", "beta", dict(beta=NAN), E, "beta"),
    ("token_kd_loss", "labels range", dict(labels=Y3 + 7), E, "labels must be class indices"),
    ("token_divergence", "nan", dict(student_logits=with_nan(S3)), E, "student_logits contains NaN"),
    ("token_divergence", "no classes", dict(student_logits=rand(2, 5, 0), teacher_logits=rand(2, 5, 0)), E,
     "student_logits must have a class"),
    ("token_divergence", "shape", dict(teacher_logits=rand(2, 5, 6)), E, "student_logits and teacher_logits"),
    ("token_divergence", "empty", dict(student_logits=rand(2, 0, 7), teacher_logits=rand(2, 0, 7)), E,
     "student_logits is empty"),
    ("token_divergence", "T=0", dict(temperature=0.0), E, "temperature"),
    ("token_divergence", "divergence", dict(divergence="kl"), E, "divergence must be one of"),
    ("shift_for_causal_lm", "labels dtype", dict(labels=Y3.float()), TypeError, "labels must be integer"),
    ("shift_for_causal_lm", "2-d", dict(logits=S3[0]), E, "logits must have 3 dimensions"),
    ("shift_for_causal_lm", "mask shape", dict(attention_mask=torch.ones(2, 4)), E,
     r"attention_mask must be a tensor of shape \(2, 5\)"),
    ("shift_for_causal_lm", "mask 0.5", dict(attention_mask=torch.full((2, 5), 0.5)), E, "attention_mask must be"),
    ("shift_for_causal_lm", "one position", dict(logits=S3[:, :1], labels=Y3[:, :1]), E,
     "labels must hold at least 2 positions"),
    ("topk_teacher_logits", "nan", dict(teacher_logits=with_nan(T3)), E, "teacher_logits contains NaN"),
    ("topk_teacher_logits", "empty", dict(teacher_logits=rand(2, 0, 7)), E, "teacher_logits is empty"),
    ("topk_teacher_logits", "k=0", dict(k=0), E, "k must be an int"),
    ("topk_teacher_logits", "k>V", dict(k=8), E, r"k must be an int in \[1, 7\]"),
    ("topk_mass", "T=-1", dict(temperature=-1.0), E, "temperature must be a finite number > 0"),
    ("topk_mass", "T=0", dict(temperature=0.0), E, "temperature must be a finite number > 0"),
    ("topk_mass", "nan", dict(teacher_logits=with_nan(T3)), E, "teacher_logits contains NaN"),
    ("topk_mass", "k=0", dict(k=0), E, "k must be"),
    ("topk_divergence", "duplicates", dict(topk_indices=_duplicated(_INDICES)), E, "topk_indices repeats an index"),
    ("topk_divergence", "nan", dict(topk_values=with_nan(_VALUES)), E, "topk_values contains NaN"),
    ("topk_divergence", "range", dict(topk_indices=_INDICES + 7), E, r"topk_indices must lie in \[0, 7\)"),
    ("topk_divergence", "positions", dict(topk_values=_VALUES[:, :4], topk_indices=_INDICES[:, :4]), E,
     "topk_indices .* differ in their positions"),
    ("topk_kd_loss", "duplicates", dict(topk_indices=_duplicated(_INDICES)), E, "topk_indices repeats an index"),
    ("topk_kd_loss", "nan", dict(topk_values=with_nan(_VALUES)), E, "topk_values contains NaN"),
    ("topk_kd_loss", "dtype", dict(topk_indices=_INDICES.float()), TypeError, "topk_indices must be integer"),
    ("topk_kd_loss", "T=0", dict(temperature=0.0), E, "temperature"),
    # ---- deit
    ("deit_loss", "T=0", dict(temperature=0.0), E, "temperature must be a finite number > 0"),
    ("deit_loss", "alpha=2", dict(alpha=2.0), E, "alpha must be a finite number in"),
    ("deit_loss", "nan teacher (hard)", dict(teacher_logits=with_nan(ZT), hard=True), E, "teacher_logits contains NaN"),
    ("deit_loss", "targets range", dict(targets=torch.tensor([0, 1, 2, 10])), E, r"targets must be class indices in"),
    ("deit_loss", "targets dtype", dict(targets=Y.float()), TypeError, "targets must be integer"),
    ("deit_loss", "empty", dict(class_logits=rand(0, 10), dist_logits=rand(0, 10), teacher_logits=rand(0, 10),
                                targets=torch.zeros(0, dtype=torch.long)), E, "class_logits is empty"),
    ("deit_loss", "shape", dict(teacher_logits=rand(4, 9)), E, "share a shape"),
    ("deit_loss", "hard", dict(hard="yes"), TypeError, "hard must be a bool"),
    # ---- features
    ("hint_loss", "nan", dict(student=with_nan(rand(2, 3, 4, 4))), E, "student contains NaN"),
    ("hint_loss", "empty", dict(student=rand(0, 3, 4, 4), teacher=rand(0, 3, 4, 4)), E, "student is empty"),
    ("hint_loss", "3-d", dict(student=rand(3, 4, 4), teacher=rand(3, 4, 4)), E, "student must be a float tensor"),
    ("hint_loss", "normalize", dict(normalize="l1"), E, "normalize must be one of"),
    ("attention_map", "2-d", dict(features=rand(4, 4)), E, "features must have at least 3 dimensions"),
    ("attention_map", "nan", dict(features=with_nan(rand(2, 3, 4, 4))), E, "features contains NaN"),
    ("attention_map", "empty", dict(features=rand(0, 3, 4, 4)), E, "features is empty"),
    ("attention_map", "p=0", dict(p=0), E, "p must be a finite number > 0"),
    ("attention_map", "p=nan", dict(p=NAN), E, "p must be"),
    ("attention_transfer_loss", "nan", dict(teacher_feats=[with_nan(rand(2, 5, 4, 4))]), E, "teacher contains NaN"),
    ("attention_transfer_loss", "beta", dict(beta=-1.0), E, "beta must be a finite number >= 0"),
    ("attention_transfer_loss", "p", dict(p=0.0), E, "p must be"),
    ("rkd_distance_loss", "nan", dict(student=with_nan(rand(4, 3))), E, "student contains NaN"),
    ("rkd_distance_loss", "one sample", dict(student=rand(1, 3), teacher=rand(1, 5)), E, "student and teacher must be"),
    ("rkd_distance_loss", "empty", dict(student=rand(4, 0), teacher=rand(4, 0)), E, "student is empty"),
    ("rkd_angle_loss", "nan", dict(teacher=with_nan(rand(4, 5))), E, "teacher contains NaN"),
    ("rkd_loss", "weight", dict(distance_weight=-1.0), E, "distance_weight must be"),
    ("rkd_loss", "weight nan", dict(angle_weight=NAN), E, "angle_weight must be"),
    ("rkd_objective", "nan", dict(teacher_embeddings=with_nan(rand(8, 5))), E, "teacher_embeddings contains NaN"),
    ("rkd_objective", "weight", dict(angle_weight=-1.0), E, "angle_weight must be"),
    # ---- speculative
    ("filtered_probs", "T=0", dict(temperature=0.0), E, "temperature must be a finite number > 0"),
    ("filtered_probs", "top_k=0", dict(top_k=0), E, "top_k must be an int >= 1"),
    ("filtered_probs", "top_p=0", dict(top_p=0.0), E, r"top_p must be a finite number in \(0, 1\]"),
    ("filtered_probs", "top_p=1.5", dict(top_p=1.5), E, "top_p must be"),
    ("filtered_probs", "nan", dict(logits=with_nan(Z)), E, "logits contains NaN"),
    ("filtered_probs", "empty", dict(logits=rand(0, 10)), E, "logits is empty"),
    ("greedy_accept", "length", dict(drafts=torch.tensor([1, 2, 3])), E, "drafts holds 3 tokens"),
    ("greedy_accept", "dtype", dict(drafts=torch.tensor([1.0, 2.0])), TypeError, "drafts must be"),
    ("greedy_accept", "nan", dict(target_logits=with_nan(rand(3, 10))), E, "target_logits contains NaN"),
    ("residual_distribution", "sizes", dict(q=probs(9)), E, "p and q must have the same shape"),
    ("residual_distribution", "nan", dict(p=with_nan(P)), E, "p contains NaN"),
    ("residual_distribution", "unnormalised", dict(q=Q * 2), E, "q must sum to 1"),
    ("residual_distribution", "2-d", dict(p=probs(2, 10), q=probs(2, 10)), E, "p must have 1 dimensions"),
    ("speculative_accept", "rows", dict(q=probs(3, 10)), E, r"q must be \[K, V\]"),
    ("speculative_accept", "negative", dict(p=probs(3, 10) + torch.tensor([[-1.0, 1.0] + [0.0] * 8] * 3)), E,
     r"p must hold probabilities \(>= 0\)"),
    ("speculative_accept", "drafts range", dict(drafts=torch.tensor([1, 10])), E, r"drafts must be token ids"),
    ("expected_acceptance", "sizes", dict(q=probs(9)), E, "p and q must have the same shape"),
    ("expected_acceptance", "logits", dict(p=rand(10)), E, "p must"),
    ("one_draft_outcome", "nan", dict(drawn=with_nan(Q)), E, "drawn contains NaN"),
    ("expected_tokens_per_call", "alpha nan", dict(alpha=NAN), E, "alpha"),
    ("expected_tokens_per_call", "k=0", dict(k=0), E, "k "),
    ("expected_speedup", "cost nan", dict(cost_ratio=NAN), E, "cost_ratio must be a finite number >= 0"),
    ("expected_speedup", "verify 0", dict(verify_cost=0.0), E, "verify_cost must be a finite number > 0"),
    ("required_acceptance", "speedup nan", dict(speedup=NAN), E, "speedup must be a finite number > 0"),
    # ---- analysis
    ("entropy_vs_temperature", "no temperatures", dict(temperatures=[]), E, "temperatures is empty"),
    ("entropy_vs_temperature", "T=0", dict(temperatures=[1.0, 0.0]), E, "temperatures must be a finite number > 0"),
    ("entropy_vs_temperature", "nan", dict(logits=with_nan(Z)), E, "logits contains NaN"),
    ("class_similarity", "labels range", dict(labels=torch.tensor([0, 1, 2, 3, 0, 1])), E, "labels must be class"),
    ("class_similarity", "labels dtype", dict(labels=torch.zeros(6)), TypeError, "labels must be integer"),
    ("class_similarity", "unnormalised", dict(probs=probs(6, 3) * 3), E, "probs must sum to 1"),
    ("class_similarity", "num_classes", dict(num_classes=0), E, "num_classes must be an int >= 1"),
    ("most_similar_pairs", "not square", dict(similarity=probs(3, 4)), E, "similarity must be a square"),
    ("most_similar_pairs", "nan", dict(similarity=with_nan(probs(3, 3))), E, "similarity contains NaN"),
    ("most_similar_pairs", "k=0", dict(k=0), E, "k must be an int >= 1"),
    ("mcnemar_test", "not 0/1", dict(correct_a=torch.tensor([0.2, 0.9, 1.0, 0.0])), E, "correct_a must be"),
    ("mcnemar_test", "lengths", dict(correct_b=torch.tensor([True])), E, "equally long"),
    ("mcnemar_test", "empty", dict(correct_a=torch.tensor([], dtype=torch.bool),
                                   correct_b=torch.tensor([], dtype=torch.bool)), E, "non-empty"),
    ("mcnemar_exact", "negative", dict(b=-1), E, "b must be a count"),
    ("mcnemar_bounds", "exceeds", dict(correct_a=11), E, "exceed"),
    # ---- online, engine, plots, compress
    ("combine_logits", "nan", dict(logits=[Z, with_nan(ZT)]), E, r"logits\[1\] contains NaN"),
    ("combine_logits", "shapes", dict(logits=[Z, rand(4, 9)]), E, r"logits\[1\] has shape"),
    ("combine_logits", "none", dict(logits=[]), E, "at least one model"),
    ("combine_logits", "how", dict(how="vote"), E, "how must be one of"),
    ("mutual_learning", "T=nan", dict(temperature=NAN), E, "temperature must be a finite number > 0"),
    ("mutual_learning", "weight", dict(weight=-1.0), E, "weight must be"),
    ("RunSpec", "T=0", dict(temperature=0.0), E, "temperature must be a finite number > 0"),
    ("RunSpec", "T=nan", dict(temperature=NAN), E, "temperature"),
    ("RunSpec", "alpha=2", dict(alpha=2.0), E, r"alpha must be a finite number in \[0, 1\]"),
    ("RunSpec", "smoothing", dict(label_smoothing=-0.1), E, "label_smoothing must be"),
    ("RunSpec", "direction", dict(direction="backward"), E, "direction must be one of"),
    ("logits_accuracy", "empty", dict(logits=rand(0, 10), labels=torch.zeros(0, dtype=torch.long)), E, "logits is empty"),
    ("logits_accuracy", "labels dtype", dict(labels=Y.float()), TypeError, "labels must be integer"),
    ("logits_accuracy", "labels shape", dict(labels=Y[:3]), E, "labels"),
    ("gaussian_logits", "width=0", dict(width=0.0), E, "width must be a finite number > 0"),
    ("gaussian_logits", "mean nan", dict(mean=NAN), E, "mean must be a finite number"),
    ("fit_gaussian_student", "nan", dict(teacher_logits=with_nan(rand(8))), E, "teacher_logits contains NaN"),
    ("fit_gaussian_student", "empty", dict(teacher_logits=rand(0)), E, "teacher_logits"),
    ("fit_gaussian_student", "lr", dict(lr=0.0), E, "lr must be a finite number > 0"),
    ("fit_gaussian_student", "steps", dict(steps=-1), E, "steps must be an int >= 0"),
    ("onnx_parity", "empty", dict(x=rand(0, 3)), E, "x is empty"),
    # ---- distilbert
    ("hidden_cosine_loss", "nan", dict(teacher_hidden=with_nan(rand(2, 3, 4))), E, r"teacher_hidden\[0\] contains NaN"),
    ("hidden_cosine_loss", "empty", dict(student_hidden=rand(0, 3, 4), teacher_hidden=rand(0, 3, 4),
                                         attention_mask=None), E, r"student_hidden\[0\] is empty"),
    ("hidden_cosine_loss", "mask 0.5", dict(attention_mask=torch.full((2, 3), 0.5)), E, "attention_mask must be"),
    ("triple_loss", "T=0", dict(temperature=0.0), E, "temperature must be a finite number > 0"),
    ("triple_loss", "nan", dict(student_logits=with_nan(rand(4, 3))), E, "student_logits contains NaN"),
    ("triple_loss", "weights", dict(weights=(1.0, NAN, 1.0)), E, "weight ce must be"),
]


def _call(name, **changes):
    return _function(name)(**{**GOOD[name][1](), **changes})


def _finite(result) -> bool:
    if torch.is_tensor(result):
        return bool(torch.isfinite(result.float()).all()) if result.numel() else True
    if isinstance(result, (int, float)):
        return math.isfinite(result)
    if isinstance(result, dict):
        return all(_finite(x) for x in result.values())
    if isinstance(result, (tuple, list)):
        return all(_finite(x) for x in result if not isinstance(x, str))
    return True                                  # a factory, a dataclass: it ran


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_arguments_give_a_finite_result(name):
    assert _finite(_call(name)), f"{name} gave a non-finite result on good arguments"


@pytest.mark.parametrize("name,kind,changes,error,match", BAD, ids=[f"{n}-{k}" for n, k, *_ in BAD])
def test_bad_input_is_a_clear_error(name, kind, changes, error, match):
    with pytest.raises(error, match=match) as caught:
        _call(name, **changes)
    assert type(caught.value) in (ValueError, TypeError)     # not a subclass torch raises (IndexError...)


def test_every_audited_function_has_bad_cases():
    assert {n for n, *_ in BAD} == set(GOOD)


# ------------------------------------------------------------------- documented values, kept

def test_unvalidated_empty_batch_is_still_a_documented_zero():
    loss = losses.kd_loss(rand(0, 10), rand(0, 10), torch.zeros(0, dtype=torch.long), validate=False)
    assert loss.item() == 0.0
    assert losses.kd_loss(Z, ZT, Y, mask=torch.zeros(4, dtype=torch.bool)).item() == 0.0    # none counts: 0
    db = _distilbert()                                        # exercise 08's contract: no real token gives 0
    assert db.hidden_cosine_loss(rand(2, 3, 4), rand(2, 3, 4), torch.zeros(2, 3, dtype=torch.long)).item() == 0.0


def test_training_loops_skip_the_value_checks(monkeypatch):
    """The flags the engine's objectives pass: no value is read (no GPU sync), so no check runs."""
    def sync(*_):
        raise AssertionError("a value was read")
    for attr in ("__bool__", "item", "__float__", "__int__", "__index__", "tolist"):
        monkeypatch.setattr(torch.Tensor, attr, sync)
    col = torch.tensor([[2.0], [3.0]])
    losses.soft_target_kl(rand(2, 4, 10), rand(2, 4, 10), col, validate=False)
    deit.deit_loss(rand(2, 4, 10), rand(2, 4, 10), labels(2, 4), rand(2, 4, 10), alpha=col / 4, temperature=col,
                   hard=torch.tensor([[True], [False]]), validate=False)
    features.hint_loss(rand(2, 3, 4, 4), rand(2, 3, 4, 4), validate=False)
    features.attention_map(rand(2, 3, 4, 4), validate=False)
    features.rkd_loss(rand(4, 3), rand(4, 5), validate=False)
    llm_losses.token_divergence(S3, T3, "jsd", validate=False)
    llm_losses.topk_divergence(S3, _VALUES, _INDICES, validate=False)


def test_validation_does_not_change_values():
    """The checks only read: the validated and unvalidated calls give identical results."""
    assert torch.equal(losses.soft_target_kl(Z, ZT, 2.0), losses.soft_target_kl(Z, ZT, 2.0, validate=False))
    kw = dict(alpha=0.3, temperature=2.0, hard=False)
    zd = rand(4, 10, seed=2)
    assert torch.equal(deit.deit_loss(Z, zd, Y, ZT, **kw), deit.deit_loss(Z, zd, Y, ZT, **kw, validate=False))
    assert torch.equal(features.rkd_loss(rand(4, 3), rand(4, 5)), features.rkd_loss(rand(4, 3), rand(4, 5),
                                                                                      validate=False))
    assert torch.equal(acceptance.filtered_probs(Z, 0.7, 5, 0.9), acceptance._filtered_probs(Z, 0.7, 5, 0.9))


# ------------------------------------------------------------------- the helpers

def test_check_tensor_and_logits():
    v.check_logits("z", Z)
    v.check_logits("z", rand(0, 3), allow_empty=True)
    with pytest.raises(TypeError, match="z must be a tensor"):
        v.check_logits("z", [1.0, 2.0])
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        v.check_logits("z", Y)
    with pytest.raises(ValueError, match=r"z must have 2 dimensions \[B, C\], got shape \(4, 10, 1\)"):
        v.check_logits("z", Z[..., None], dims=2, layout="[B, C]")
    with pytest.raises(ValueError, match="z must have 2 or 3 dimensions"):
        v.check_logits("z", rand(3), dims=(2, 3))
    with pytest.raises(ValueError, match="z is empty"):
        v.check_logits("z", rand(0, 3))
    with pytest.raises(ValueError, match="class"):
        v.check_logits("z", rand(3, 0), allow_empty=True)
    with pytest.raises(ValueError, match=r"z contains NaN or infinite values \(1 of 40\)"):
        v.check_logits("z", with_nan(Z))
    v.check_logits("z", torch.full((2, 3), NAN), finite=False)
    v.check_tensor("x", torch.zeros(2, 3, device="meta"))                 # no values to read
    v.check_tensor("ids", Y, floating=False)


def test_check_probabilities():
    v.check_probabilities("p", probs(3, 50))
    v.check_probabilities("p", torch.tensor([1.0, 0.0]))
    v.check_probabilities("p", probs(2, 1000).half())                       # low precision: a wider tolerance
    with pytest.raises(ValueError, match="p must sum to 1.*found a sum of 1.1"):
        v.check_probabilities("p", torch.tensor([0.6, 0.5]))
    with pytest.raises(ValueError, match=r"p must hold probabilities \(>= 0\), found -0.5"):
        v.check_probabilities("p", torch.tensor([-0.5, 1.5]))


@pytest.mark.parametrize("t", [1.0, 4, 0.05, torch.tensor([[1.0], [3.0]]), torch.tensor(2.0)])
def test_check_temperature_accepts(t):
    v.check_temperature(t)


@pytest.mark.parametrize("t,error", [(0.0, ValueError), (-1.0, ValueError), (NAN, ValueError), (math.inf, ValueError),
                                     (True, TypeError), ("2", TypeError), (torch.tensor([1.0, 0.0]), ValueError),
                                     (torch.tensor([]), ValueError)])
def test_check_temperature_rejects(t, error):
    with pytest.raises(error, match="temperature"):
        v.check_temperature(t)


def test_check_temperature_tensor_only_when_allowed():
    with pytest.raises(TypeError, match="temperature must be a Python number"):
        v.check_temperature(torch.tensor(2.0), allow_tensor=False)
    with pytest.raises(ValueError, match="T_draft must be a finite number > 0"):
        v.check_temperature(0.0, "T_draft")


def test_check_weight_and_fraction():
    v.check_fraction("alpha", 0.0)
    v.check_fraction("alpha", torch.tensor([[0.0], [1.0]]))
    v.check_weight("beta", 1e3)
    v.check_weight("mean", -5.0, low=-math.inf)
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 1\], got 1.5: the weight"):
        v.check_fraction("alpha", 1.5, meaning="the weight")
    with pytest.raises(ValueError, match=r"top_p must be a finite number in \(0, 1\]"):
        v.check_weight("top_p", 0.0, high=1.0, low_open=True)
    with pytest.raises(ValueError, match="w must be a finite number >= 0"):
        v.check_weight("w", NAN)
    with pytest.raises(ValueError, match="mean must be a finite number, got inf"):
        v.check_weight("mean", math.inf, low=-math.inf)
    with pytest.raises(TypeError, match="alpha must be a number"):
        v.check_fraction("alpha", None)


def test_check_mask_targets_shapes_ints_distinct_choice():
    v.check_mask("mask", torch.tensor([1, 0, 1]), (3,))
    with pytest.raises(ValueError, match=r"mask must be a tensor of shape \(3,\) \(per token\), got \(2,\)"):
        v.check_mask("mask", torch.ones(2), (3,), what="per token")
    with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
        v.check_mask("mask", torch.tensor([0.5, 1, 1]), (3,))
    v.check_targets("y", torch.tensor([0, -100, 2]), classes=3, ignore_index=-100)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 3\) for 3 classes; found 3"):
        v.check_targets("y", torch.tensor([0, 3]), classes=3)
    with pytest.raises(TypeError, match="y must be integer class indices"):
        v.check_targets("y", torch.tensor([True]), classes=3)
    with pytest.raises(ValueError, match=r"y shape \(2,\) does not match"):
        v.check_targets("y", torch.tensor([0, 1]), classes=3, shape=(3,))
    v.check_targets("y", torch.tensor([0, 5]), classes=3, counted=torch.tensor([True, False]))
    with pytest.raises(ValueError, match=r"a and b must have the same shape, got a \(2,\), b \(3,\): why"):
        v.check_same_shape(("a", torch.ones(2)), ("b", torch.ones(3)), what="why")
    v.check_positive_int("k", 3, maximum=3)
    for bad in (0, 4, 2.0, True, None):
        with pytest.raises(ValueError, match=r"k must be an int in \[1, 3\]"):
            v.check_positive_int("k", bad, maximum=3)
    v.check_distinct("idx", torch.tensor([[2, 0, 1], [0, 1, 2]]))
    with pytest.raises(ValueError, match="idx repeats an index"):
        v.check_distinct("idx", torch.tensor([[2, 0, 1], [0, 1, 0]]))
    v.check_choice("how", "probs", ("probs", "logits"))
    with pytest.raises(ValueError, match=r"how must be one of \('probs', 'logits'\), got 'vote'"):
        v.check_choice("how", "vote", ("probs", "logits"))
