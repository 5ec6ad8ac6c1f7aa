"""The ex08_distilbert checks (DistilBERT's layer-copy names, the hidden-state cosine loss over the real
tokens, the triple loss) fail wrong answers, and name their mistakes; their references restate
course_lib.encoder's layer_copy_map, hidden_cosine_loss and triple_loss on names and plain tensors
(the check module does not import course_lib.encoder, which imports transformers), and the tests
below pin them to it, on tiny BERTs.

The generic tests (test_grader.py, test_discovery.py) grade solutions/ and exercises/ as a whole;
here each wrong answer is a copy of solutions/ex08_distilbert.py with text replaced. A group breaks
each of the three functions at most once, so one child process grades up to three mistakes, and a
mistake in one function costs nothing in the others.
"""
from __future__ import annotations

import pytest
import torch

from course_lib.grading.checks import ex08_distilbert as checks
from course_lib.paths import solutions_dir
from _mutations import MutationTests

MODULE = "ex08_distilbert"
SOLUTION = solutions_dir() / f"{MODULE}.py"

POSITION = "position = {i: j for j, i in enumerate(kept)}"
RENAME = 'sources[f"{prefix}{position[layer_of[key]]}.{rest}"] = key'
AS_THEY_ARE = "            sources[key] = key                              # embeddings, pooler, classifier: as they are"
LOOP = """    sources = {}
    for key in teacher_keys:
        if key not in layer_of:
            sources[key] = key                              # embeddings, pooler, classifier: as they are
        elif layer_of[key] in position:
            rest = key[len(prefix):].split(".", 1)[1]
            sources[f"{prefix}{position[layer_of[key]]}.{rest}"] = key
    return sources
"""
WITHOUT_DOT = """    sources = {key: key for key in teacher_keys if key not in layer_of}
    for j, i in enumerate(kept):
        old, new = f"{prefix}{i}", f"{prefix}{j}"
        sources.update({key.replace(old, new, 1): key for key in teacher_keys if key.startswith(old)})
    return sources
"""
DISTANCE = "distance = 1 - F.cosine_similarity(student_hidden, teacher_hidden.detach(), dim=-1)"
MEAN = "return distance[real].sum() / real.sum().clamp_min(1)"
KL = "kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).mean()"
KL_TERM = "total = total + w_kd * temperature ** 2 * kl"
CE_TERM = "total = total + w_ce * F.cross_entropy(student_logits, labels)"
COS_TERM = "total = total + w_cos * cos"
UNPACK = "w_kd, w_ce, w_cos = weights"

SOURCES_VALUES = {"sources_match_reference", "sources_twelve_layers", "sources_limit_cases"}
COSINE_VALUES = {"cosine_matches_reference", "cosine_ignores_padding", "cosine_limits",
                 "cosine_gradient_reaches_only_the_student"}
TRIPLE_VALUES = {"triple_matches_reference", "triple_gradient_reaches_only_the_student"}

# name: (function, [(old, new)], checks that must fail, text their messages must contain)
MUTATIONS = {
    "sources_not_renumbered": (
        "student_layer_sources", [(RENAME, "sources[key] = key")], SOURCES_VALUES,
        "the teacher's layer numbers kept"),
    "sources_first_layers": (
        "student_layer_sources", [(POSITION, "position = {j: j for j in range(len(kept))}")],
        SOURCES_VALUES, "the first len(kept_layers) teacher layers copied"),
    "sources_numbered_from_one": (
        "student_layer_sources", [(POSITION, "position = {i: j for j, i in enumerate(kept, start=1)}")],
        SOURCES_VALUES, "the student's layers numbered from 1"),
    "sources_one_based": (
        "student_layer_sources", [(POSITION, "position = {i - 1: j for j, i in enumerate(kept)}")],
        SOURCES_VALUES, "kept_layers read as 1-based"),
    "sources_embeddings_dropped": (
        "student_layer_sources", [(AS_THEY_ARE, '            if not key.startswith("bert.embeddings."):\n'
                                                "                sources[key] = key")],
        SOURCES_VALUES, "the embeddings left out"),
    "sources_head_dropped": (
        "student_layer_sources", [(AS_THEY_ARE, '            if key.startswith("bert.embeddings."):\n'
                                                "                sources[key] = key")],
        SOURCES_VALUES, "the pooler and the classifier left out"),
    "sources_layers_only": (
        "student_layer_sources", [(AS_THEY_ARE, "            pass")], SOURCES_VALUES, "only the encoder layers mapped"),
    "sources_others_kept": (
        "student_layer_sources", [("elif layer_of[key] in position:", "elif layer_of[key] not in position:\n"
                                   "            sources[key] = key\n        else:")],
        SOURCES_VALUES, "the teacher's other layers kept under their own names"),
    "sources_the_wrong_way_round": (
        "student_layer_sources", [("    return sources\n", "    return {t: s for s, t in sources.items()}\n")],
        SOURCES_VALUES, "the mapping the wrong way round"),
    "sources_prefix_without_its_dot": (  # only two-digit layer numbers tell
        "student_layer_sources", [(LOOP, WITHOUT_DOT)], {"sources_twelve_layers"},
        "the layer prefix matched without its final dot"),
    "cosine_padding_included": (
        "hidden_cosine_loss", [(MEAN, "return distance.mean()")], COSINE_VALUES, "padding included"),
    "cosine_over_the_tokens": (  # dim=1 gives [B, H]: a value where S == H, an IndexError elsewhere
        "hidden_cosine_loss", [(DISTANCE, DISTANCE.replace("dim=-1", "dim=1"))], COSINE_VALUES,
        "the cosine over the tokens, dim=1"),
    "cosine_similarity_not_distance": (
        "hidden_cosine_loss", [(DISTANCE, DISTANCE.replace("1 - ", ""))], COSINE_VALUES, "cos instead of 1 - cos"),
    "cosine_sequence_sums": (
        "hidden_cosine_loss", [(MEAN, "return distance[real].sum() / len(distance)")],
        COSINE_VALUES, "the per-sequence sums averaged over the batch"),
    "cosine_mean_of_sequence_means": (
        "hidden_cosine_loss", [(MEAN, "return ((distance * real).sum(1) / real.sum(1)).mean()")],
        COSINE_VALUES, "the mean of the per-sequence means"),
    "cosine_sum": (
        "hidden_cosine_loss", [(MEAN, "return distance[real].sum()")], COSINE_VALUES,
        "the sum over the real tokens instead of their mean"),
    "cosine_divided_by_every_position": (
        "hidden_cosine_loss", [(MEAN, "return distance[real].sum() / distance.numel()")],
        COSINE_VALUES, "divided by B * S"),
    "cosine_mask_inverted": (
        "hidden_cosine_loss", [("\n    real = attention_mask.bool()", "\n    real = ~attention_mask.bool()")],
        COSINE_VALUES, "the mask inverted"),
    "cosine_mse": (
        "hidden_cosine_loss", [(DISTANCE, "distance = ((student_hidden - teacher_hidden.detach()) ** 2).mean(-1)")],
        COSINE_VALUES, "the mean squared error"),
    "cosine_dot_product": (
        "hidden_cosine_loss", [(DISTANCE, "distance = 1 - (student_hidden * teacher_hidden.detach()).sum(-1)")],
        COSINE_VALUES, "the dot product not divided by the norms"),
    "cosine_nan_without_real_tokens": (
        "hidden_cosine_loss", [(MEAN, "return distance[real].mean()")], {"cosine_limits"},
        "the mask has no real token here: 0 / 0"),
    "cosine_teacher_not_detached": (
        "hidden_cosine_loss", [(DISTANCE, DISTANCE.replace(".detach()", ""))],
        {"cosine_gradient_reaches_only_the_student"}, "the teacher not detached"),
    "cosine_shapes_not_checked": (
        "hidden_cosine_loss", [("\n    if student_hidden.dim() != 3 or student_hidden.shape != teacher_hidden.shape:",
                                "\n    if False:")],
        {"cosine_rejects_bad_inputs"}, "student [2, 5, 8] with teacher [2, 5, 6] (a narrower student): raised"),
    "cosine_mask_not_checked": (
        "hidden_cosine_loss", [("if attention_mask is not None and attention_mask.shape != student_hidden.shape[:2]:",
                                "if False:")],
        {"cosine_rejects_bad_inputs"}, "a mask of shape [2, 4] with hidden states [2, 5, 8]: raised"),
    "triple_no_t2": (
        "triple_loss", [(KL_TERM, "total = total + w_kd * kl")], TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"},
        "a missing T^2 factor"),
    "triple_t_not_t2": (
        "triple_loss", [(KL_TERM, "total = total + w_kd * temperature * kl")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "T instead of T^2"),
    "triple_t2_on_every_term": (
        "triple_loss", [(KL_TERM, "total = total + w_kd * kl"), ("    return total\n", "    return temperature ** 2 * total\n")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "T^2 on every term"),
    "triple_reverse_kl": (
        "triple_loss", [(KL, "kl = (log_ps.exp() * (log_ps - log_pt)).sum(dim=-1).mean()")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "the reverse KL"),
    "triple_ce_tempered": (
        "triple_loss", [(CE_TERM, CE_TERM.replace("student_logits, labels", "student_logits / temperature, labels"))],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "the CE at temperature T"),
    "triple_kl_summed_over_the_batch": (
        "triple_loss", [(KL, "kl = (log_pt.exp() * (log_pt - log_ps)).sum()")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "the KL summed over the batch"),
    "triple_kl_div_default_mean": (
        "triple_loss", [(KL, "kl = (log_pt.exp() * (log_pt - log_ps)).mean()")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "the KL divided by B * C"),
    "triple_kd_and_ce_weights_swapped": (
        "triple_loss", [(UNPACK, "w_ce, w_kd, w_cos = weights")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "the kd and ce weights swapped"),
    "triple_weights_normalised": (
        "triple_loss", [(UNPACK, "w_kd, w_ce, w_cos = (w / (sum(weights) or 1) for w in weights)")],
        TRIPLE_VALUES, "the weights divided by their sum"),
    "triple_cos_over_the_padding": (
        "triple_loss", [("cos = distance[real].sum() / real.sum().clamp_min(1)", "cos = distance.mean()")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "the cosine term over every token, padding included"),
    "triple_cos_similarity": (
        "triple_loss", [(COS_TERM, "total = total + w_cos * (1 - cos)")],
        TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"}, "the cosine term as cos instead of 1 - cos"),
    "triple_cos_left_out": (
        "triple_loss", [(COS_TERM, "pass")], TRIPLE_VALUES | {"triple_skips_terms_of_weight_zero"},
        "the cosine term left out"),
    "triple_teacher_logits_not_detached": (
        "triple_loss", [("teacher_logits.detach() / temperature", "teacher_logits / temperature")],
        {"triple_gradient_reaches_only_the_student"}, "a gradient reaches the teacher's teacher_logits"),
    "triple_teacher_hidden_not_detached": (
        "triple_loss", [("similarity = F.cosine_similarity(student_hidden, teacher_hidden.detach(), dim=-1)",
                         "similarity = F.cosine_similarity(student_hidden, teacher_hidden, dim=-1)")],
        {"triple_gradient_reaches_only_the_student"}, "a gradient reaches the teacher's teacher_hidden"),
    "triple_term_of_weight_zero_computed": (  # F.cross_entropy(logits, None): TypeError
        "triple_loss", [("    if w_ce:\n", "    if True:\n")], {"triple_skips_terms_of_weight_zero"},
        "a term whose weight is 0 is not computed"),
    "triple_temperature_zero_accepted": (
        "triple_loss", [("if temperature <= 0:", "if temperature < 0:")], {"triple_rejects_bad_inputs"},
        "temperature=0: expected ValueError"),
    "triple_negative_weight_accepted": (
        "triple_loss", [("if min(weights) < 0 or w_kd", "if w_kd")], {"triple_rejects_bad_inputs"},
        "weights=(-0.5, 1, 1): expected ValueError"),
    "parameters_without_biases": (
        "bert_classifier_parameters",
        [("layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * (2 * h)", "layer = 4 * h * h + 2 * h * i + 2 * (2 * h)"),
         ("pooler = h * h + h", "pooler = h * h"), ("classifier = h * classes + classes", "classifier = h * classes")],
        {"parameters_match_transformers"}, "leaving out the biases"),
    "parameters_without_pooler": (
        "bert_classifier_parameters", [("pooler = h * h + h", "pooler = 0")], {"parameters_match_transformers"},
        "leaving out the pooler"),
    "parameters_without_attention_output": (
        "bert_classifier_parameters", [("layer = 4 * (h * h + h)", "layer = 3 * (h * h + h)")],
        {"parameters_match_transformers"}, "without the output projection"),
    "parameters_a_float": (
        "bert_classifier_parameters", [("return embeddings + layers * layer + pooler + classifier",
                                        "return float(embeddings + layers * layer + pooler + classifier)")],
        {"parameters_match_transformers"}, "return a Python int"),
    "choice_faster": (
        "why_every_other_layer", [('return "depth"', 'return "faster"')], {"every_other_layer_choice"},
        "any 6 of them cost the same time"),
    "choice_generic": (
        "why_every_other_layer", [('return "depth"', 'return "generic"')], {"every_other_layer_choice"},
        "never trained to read"),
}

GROUPS = [
    ["sources_not_renumbered", "cosine_padding_included", "triple_no_t2"],
    ["sources_first_layers", "cosine_over_the_tokens", "triple_t_not_t2"],
    ["sources_numbered_from_one", "cosine_similarity_not_distance", "triple_t2_on_every_term"],
    ["sources_one_based", "cosine_sequence_sums", "triple_reverse_kl"],
    ["sources_embeddings_dropped", "cosine_mean_of_sequence_means", "triple_ce_tempered"],
    ["sources_head_dropped", "cosine_sum", "triple_kl_summed_over_the_batch"],
    ["sources_layers_only", "cosine_divided_by_every_position", "triple_kl_div_default_mean"],
    ["sources_others_kept", "cosine_mask_inverted", "triple_kd_and_ce_weights_swapped"],
    ["sources_the_wrong_way_round", "cosine_mse", "triple_weights_normalised"],
    ["sources_prefix_without_its_dot", "cosine_dot_product", "triple_cos_over_the_padding"],
    ["parameters_without_biases", "cosine_nan_without_real_tokens", "triple_cos_similarity", "choice_faster"],
    ["parameters_without_pooler", "cosine_teacher_not_detached", "triple_cos_left_out", "choice_generic"],
    ["parameters_without_attention_output", "cosine_shapes_not_checked", "triple_teacher_logits_not_detached"],
    ["parameters_a_float", "cosine_mask_not_checked", "triple_teacher_hidden_not_detached"],
    ["triple_term_of_weight_zero_computed"],
    ["triple_temperature_zero_accepted"],
    ["triple_negative_weight_accepted"],
]


class TestMutations(MutationTests):
    module = MODULE
    mutations = MUTATIONS
    groups = GROUPS
    points = {"student_layer_sources": 4, "hidden_cosine_loss": 6, "triple_loss": 5, "bert_classifier_parameters": 4,
              "why_every_other_layer": 1}


def test_the_parameter_reference_counts_what_transformers_builds():
    """checks.bert_parameters against real BertForSequenceClassification models (tiny configurations), and every
    named mistake gives another count on some case of the check."""
    from transformers import BertConfig, BertForSequenceClassification
    for v, p, t, h, i, n, c in [(100, 16, 2, 8, 20, 2, 3), (50, 10, 3, 12, 7, 1, 2), (40, 8, 1, 6, 9, 3, 5)]:
        config = BertConfig(vocab_size=v, max_position_embeddings=p, type_vocab_size=t, hidden_size=h,
                            intermediate_size=i, num_hidden_layers=n, num_labels=c, num_attention_heads=2)
        model = BertForSequenceClassification(config)
        assert sum(x.numel() for x in model.parameters()) == checks.bert_parameters(v, p, t, h, i, n, c)
    assert checks.bert_parameters(30522, 512, 2, 768, 3072, 12, 2) == 109_483_778          # BERT-base, 2 labels
    for case in checks.PARAMETER_CASES:          # on every case, each mistake has a count of its own
        counts = [checks.bert_parameters(*case), *checks._parameter_mistakes(case).values()]
        assert len(set(counts)) == len(counts), case


# --------------------------------------------------------------------------- the references and the inputs

def _tiny_bert(layers: int, seed: int = 0):
    """A random BertForSequenceClassification (hidden 8), for its state-dict names and layer_copy_map."""
    import transformers
    config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=layers, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=16, num_labels=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.BertForSequenceClassification(config)


def test_the_names_are_a_bert_classifiers_and_the_sources_reference_is_layer_copy_map():
    """bert_keys(n) is the state dict of a real n-layer BertForSequenceClassification, in its order, and the
    restated reference gives layer_copy_map's mapping on every case of the checks."""
    from course_lib import encoder as db
    cases = checks.SOURCE_CASES + checks.TWELVE_LAYER_CASES + checks.LIMIT_SOURCE_CASES
    models = {n: _tiny_bert(n) for n in sorted({n for n, _ in cases})}
    for n, model in models.items():
        assert checks.bert_keys(n) == list(model.state_dict()), n
    for n, kept in cases:
        assert checks._sources(checks.bert_keys(n), kept) == db.layer_copy_map(models[n], tuple(kept)), (n, kept)
    for kept in [(4, 0, 2), (0, 2, 2), (0, 2, 6), (-1, 2), ()]:        # the reference rejects the bad layers too
        with pytest.raises(ValueError):
            db.layer_copy_map(models[6], kept)


def test_the_source_mistakes_are_told_apart():
    """Every known mistake gives another mapping than the reference on some case of the value checks; the prefix
    without its dot only on a 12-layer teacher keeping layer 1."""
    told_apart = set()
    for n, kept in checks.SOURCE_CASES + checks.TWELVE_LAYER_CASES:
        keys = checks.bert_keys(n)
        expected = checks._sources(keys, kept)
        wrong = {name for name, mapping in checks._sources_mistakes(keys, kept).items() if mapping != expected}
        if n < 12:
            assert checks.NO_DOT not in wrong
        told_apart |= wrong
    assert told_apart == set(checks._sources_mistakes(checks.bert_keys(6), (0, 2, 4)))


def test_the_cosine_reference_is_hidden_cosine_loss_and_its_mistakes_are_told_apart():
    from course_lib import encoder as db
    told_apart = set()
    for s, t, mask, what in checks._cosine_cases():
        expected = checks._cosine(s, t, mask)
        torch.testing.assert_close(expected, db.hidden_cosine_loss(s, t, mask), msg=what)
        told_apart |= {name for name, value in checks._cosine_mistakes(s, t, mask).items()
                       if abs(value.item() - expected.item()) > 1e-3}
    assert told_apart == set(checks._cosine_mistakes(*checks._hidden(0, 2, 4, 4), None))
    assert checks.TOKENS_DIM in told_apart                       # the first case has S == H
    s, t = checks._hidden(1, 2, 3, 5)
    no_token = torch.zeros(2, 3, dtype=torch.long)
    assert checks._cosine(s, t, no_token).item() == db.hidden_cosine_loss(s, t, no_token).item() == 0.0
    torch.testing.assert_close(checks._cosine(s, 3 * s, None), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(checks._cosine(s, -s, None), torch.tensor(2.0))


def test_the_triple_reference_is_triple_loss_and_its_mistakes_are_told_apart():
    from course_lib import encoder as db
    told_apart = set()
    for inputs, t, weights, what, _ in checks._triple_cases():
        expected = checks._triple(*inputs, t, weights)
        torch.testing.assert_close(expected, db.triple_loss(*inputs, temperature=t, weights=weights)[0], msg=what)
        told_apart |= {name for name, value in checks._triple_mistakes(*inputs, t, weights).items()
                       if abs(value.item() - expected.item()) > 1e-3 * abs(expected.item())}
    assert told_apart == set(checks._triple_mistakes(*checks._triple_cases()[0][0], 2.0, (1.0, 1.0, 1.0)))
    for full, inputs, weights, note in checks._zero_weight_cases():
        expected = checks._triple(*full, 2.0, weights)
        torch.testing.assert_close(expected, db.triple_loss(*inputs, temperature=2.0, weights=weights)[0], msg=note)
        torch.testing.assert_close(expected, checks._triple(*inputs, 2.0, weights), msg=note)
    assert db.DEFAULT_WEIGHTS == checks.DEFAULT_WEIGHTS
