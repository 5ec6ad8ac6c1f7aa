"""DistillationTrainer (course_lib.llm.trainer) and scripts/distill_llm.py: the loss by value
against llm_losses, the frozen teacher, gradient accumulation over unevenly padded micro-batches
(the num_items_in_batch convention), the cached top-k path, clear errors, and a 2-process
torchrun run on CPU (gloo) against the same run in one process."""
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from course_lib.llm.tiny import tiny_llama, tiny_token_blocks  # noqa: E402
from course_lib.llm.trainer import (DistillationTrainer, TokenBlockDataset, collate_token_blocks,  # noqa: E402
                                    count_real_tokens)
from course_lib.llm.losses import shift_for_causal_lm, token_kd_loss, topk_kd_loss, topk_teacher_logits  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "distill_llm.py"
V, S = 64, 12
LENGTHS = (12, 4, 9, 2)          # real tokens per row: right padding in very different amounts


def training_args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", disable_tqdm=True,
                save_strategy="no", logging_steps=1, seed=0, max_steps=1, per_device_train_batch_size=4,
                lr_scheduler_type="constant")
    return transformers.TrainingArguments(**{**base, **kw})


def padded_blocks(lengths=LENGTHS, seed=1):
    ids = tiny_token_blocks(len(lengths), S, vocab_size=V, seed=seed)
    mask = (torch.arange(S) < torch.tensor(lengths)[:, None]).long()
    return ids, mask


@pytest.fixture(scope="module")
def pair():
    return tiny_llama(4, seed=0, vocab_size=V), tiny_llama(2, seed=1, vocab_size=V)


def make_trainer(tmp_path, pair, *, dataset=None, teacher="default", args=None, **kw):
    teacher_model, student = pair
    teacher_model = copy.deepcopy(teacher_model) if teacher == "default" else teacher
    ids, mask = padded_blocks()
    return DistillationTrainer(model=copy.deepcopy(student), args=args or training_args(tmp_path),
                               teacher=teacher_model, train_dataset=dataset or TokenBlockDataset(ids, mask), **kw)


def batch_of(dataset):
    return collate_token_blocks([dataset[i] for i in range(len(dataset))])


def reference_inputs(trainer, batch):
    """(shifted student logits, shifted teacher logits, shifted labels), computed outside the trainer."""
    model_in = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    student = trainer.model(**model_in).logits
    s, y = shift_for_causal_lm(student, batch["labels"], batch["attention_mask"])
    t = trainer.teacher(**model_in).logits[:, :-1] if trainer.teacher is not None else None
    return s, t, y


# --------------------------------------------------------------------------- the loss by value

@pytest.mark.parametrize("divergence,beta", [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3)])
def test_compute_loss_equals_token_kd_loss_on_the_shifted_batch(tmp_path, pair, divergence, beta):
    kw = dict(divergence=divergence, beta=beta, temperature=2.0, alpha=0.6)
    trainer = make_trainer(tmp_path, pair, **kw)
    batch = batch_of(trainer.train_dataset)
    trainer.model.train()
    s, t, y = reference_inputs(trainer, batch)
    ref = token_kd_loss(s, t, y, **kw)
    assert torch.allclose(trainer.compute_loss(trainer.model, batch), ref, rtol=1e-5, atol=1e-7)
    # the count the loss averages over: real tokens whose successor is real (sum(LENGTHS) - rows)
    n = count_real_tokens(batch)
    assert int(n) == sum(LENGTHS) - len(LENGTHS) == int((y != -100).sum())
    # with num_items_in_batch (training): the sum over this batch's real tokens divided by it
    ref_sum = token_kd_loss(s, t, y, reduction="sum", **kw)
    got = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(50))
    assert torch.allclose(got, ref_sum / 50, rtol=1e-5)
    # evaluation ignores num_items_in_batch: the batch's own mean
    trainer.model.eval()
    assert torch.allclose(trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(50)), ref,
                          rtol=1e-5, atol=1e-7)


def test_labels_default_to_input_ids_and_padding_never_counts(tmp_path, pair):
    trainer = make_trainer(tmp_path, pair, alpha=0.5, temperature=1.5)
    ids, mask = padded_blocks()
    full = collate_token_blocks([{"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask)])
    bare = {"input_ids": ids, "attention_mask": mask}                     # no labels key: input_ids are used
    garbage = {**bare, "input_ids": ids.masked_fill(mask == 0, 7)}        # other tokens behind the padding
    trainer.model.train()
    a, b = trainer.compute_loss(trainer.model, full), trainer.compute_loss(trainer.model, bare)
    assert torch.allclose(a, b)
    # padded positions are attended by nothing real and never scored: their tokens change nothing
    assert torch.allclose(trainer.compute_loss(trainer.model, garbage), a, rtol=1e-5)


# --------------------------------------------------------------------------- the frozen teacher

def test_teacher_is_frozen_out_of_the_optimizer_and_not_saved(tmp_path, pair):
    trainer = make_trainer(tmp_path, pair, args=training_args(tmp_path, max_steps=2, learning_rate=1e-2),
                           alpha=0.5)
    teacher = trainer.teacher
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_s = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert not teacher.training and all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before_t[k]) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(v, before_s[k]) for k, v in trainer.model.state_dict().items())
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert in_optimizer and not in_optimizer & {id(p) for p in teacher.parameters()}
    assert in_optimizer == {id(p) for p in trainer.model.parameters()}
    # the checkpoint is the student's, nothing of the teacher's (4 layers) in it
    from safetensors.torch import load_file

    trainer.save_model(str(tmp_path / "saved"))
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert set(saved) == set(trainer.model.state_dict())
    assert not any(".layers.2." in k or ".layers.3." in k for k in saved)
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["num_hidden_layers"] == 2


def test_logs_have_the_kd_and_ce_parts(tmp_path, pair):
    alpha, T = 0.3, 2.0
    trainer = make_trainer(tmp_path, pair, args=training_args(tmp_path, max_steps=3, learning_rate=1e-2),
                           alpha=alpha, temperature=T, divergence="jsd", beta=0.5)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logs) == 3
    for e in logs:     # one process, one micro-batch per step: the logged loss is made of its parts
        assert e["loss"] == pytest.approx(alpha * T * T * e["kd"] + (1 - alpha) * e["ce"], rel=1e-5)
        assert 0 < e["kd"] <= 0.6932 and e["ce"] > 0    # the symmetric JSD is bounded by log 2


# --------------------------------------------------------------------------- gradient accumulation

def _one_sgd_step(tmp_path, pair, name, **kw):
    args = training_args(tmp_path / name, optim="sgd", learning_rate=1.0, max_grad_norm=0.0, weight_decay=0.0, **kw)
    trainer = make_trainer(tmp_path, pair, args=args, alpha=0.5, temperature=2.0, divergence="reverse_kl")
    start = {k: v.clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    return {k: start[k] - v.detach() for k, v in trainer.model.named_parameters()}   # lr 1: the gradient


def test_accumulating_two_micro_batches_equals_one_big_batch(tmp_path, pair):
    big = _one_sgd_step(tmp_path, pair, "big", per_device_train_batch_size=4, gradient_accumulation_steps=1)
    acc = _one_sgd_step(tmp_path, pair, "acc", per_device_train_batch_size=2, gradient_accumulation_steps=2)
    for k in big:
        assert torch.allclose(acc[k], big[k], rtol=1e-4, atol=1e-7), k
    # ... and both are the gradient of the mean over ALL real tokens of the 4 rows
    trainer = make_trainer(tmp_path, pair, alpha=0.5, temperature=2.0, divergence="reverse_kl")
    batch = batch_of(trainer.train_dataset)
    trainer.model.train()
    s, t, y = reference_inputs(trainer, batch)
    token_kd_loss(s, t, y, alpha=0.5, temperature=2.0, divergence="reverse_kl").backward()
    for k, p in trainer.model.named_parameters():
        assert torch.allclose(big[k], p.grad, rtol=1e-4, atol=1e-7), k
    # the test has power: the naive convention (each micro-batch's mean / 2) gives another gradient here
    trainer.model.zero_grad()
    rows = [collate_token_blocks([trainer.train_dataset[i] for i in pairs]) for pairs in ((0, 1), (2, 3))]
    (sum(trainer.compute_loss(trainer.model, b) for b in rows) / 2).backward()
    naive = torch.cat([p.grad.flatten() for p in trainer.model.parameters()])
    exact = torch.cat([big[k].flatten() for k, _ in trainer.model.named_parameters()])
    assert (naive - exact).norm() > 0.05 * exact.norm()


# --------------------------------------------------------------------------- cached top-k teacher

def test_cached_topk_path_equals_topk_kd_loss_and_needs_no_teacher(tmp_path, pair):
    teacher = pair[0]
    ids, mask = padded_blocks()
    with torch.no_grad():
        values, indices = topk_teacher_logits(teacher(input_ids=ids, attention_mask=mask).logits, 8)
    data = TokenBlockDataset(ids, mask, teacher_topk_values=values.half(), teacher_topk_indices=indices.int())
    kw = dict(temperature=2.0, alpha=0.7)
    trainer = make_trainer(tmp_path, pair, teacher=None, dataset=data,
                           args=training_args(tmp_path, max_steps=2, learning_rate=1e-2), **kw)
    batch = batch_of(data)
    trainer.model.train()
    s, _, y = reference_inputs(trainer, batch)
    ref = topk_kd_loss(s, batch["teacher_topk_values"][:, :-1], batch["teacher_topk_indices"][:, :-1], y, **kw)
    assert torch.allclose(trainer.compute_loss(trainer.model, batch), ref, rtol=1e-5, atol=1e-7)
    trainer.train()                # the Trainer keeps the top-k columns (not in the model's forward signature)
    assert [e["loss"] > 0 for e in trainer.state.log_history if "loss" in e] == [True, True]
    for divergence, beta in [("reverse_kl", 0.5), ("jsd", 0.3)]:     # the other divergences, over the top-k
        other = make_trainer(tmp_path, pair, teacher=None, dataset=data, divergence=divergence, beta=beta, **kw)
        other.model.train()
        s, _, y = reference_inputs(other, batch)
        ref = topk_kd_loss(s, batch["teacher_topk_values"][:, :-1], batch["teacher_topk_indices"][:, :-1], y,
                           divergence=divergence, beta=beta, **kw)
        assert torch.allclose(other.compute_loss(other.model, batch), ref, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- clear errors

def test_vocabulary_mismatch_names_both_sizes_and_vocab_size_trims(tmp_path, pair):
    wide = tiny_llama(2, seed=3, vocab_size=80)
    with pytest.raises(ValueError, match=r"teacher .*80 output rows, the student .*64.*vocab_size"):
        make_trainer(tmp_path, pair, teacher=wide)
    trainer = make_trainer(tmp_path, pair, teacher=wide, vocab_size=V, alpha=0.5)
    batch = batch_of(trainer.train_dataset)
    trainer.model.train()
    s, t, y = reference_inputs(trainer, batch)
    assert t.shape[-1] == 80
    assert torch.allclose(trainer.compute_loss(trainer.model, batch), token_kd_loss(s, t, y, alpha=0.5, vocab_size=V),
                          rtol=1e-5)


def test_clear_errors(tmp_path, pair):
    trainer = make_trainer(tmp_path, pair, teacher=None)
    batch = batch_of(trainer.train_dataset)
    with pytest.raises(ValueError, match="no teacher: pass teacher=.*teacher_topk_values"):
        trainer.compute_loss(trainer.model, batch)
    with pytest.raises(ValueError, match="only one of"):
        trainer.compute_loss(trainer.model, {**batch, "teacher_topk_values": torch.zeros(4, S, 2)})
    with pytest.raises(ValueError, match="divergence must be one of"):
        make_trainer(tmp_path, pair, divergence="kl")
    with pytest.raises(ValueError, match="share .* parameter"):
        student = tiny_llama(2, seed=1, vocab_size=V)
        DistillationTrainer(model=student, args=training_args(tmp_path), teacher=student,   # one object: the known bug
                            train_dataset=TokenBlockDataset(padded_blocks()[0]))
    with pytest.raises(ValueError, match="both .* or neither"):
        TokenBlockDataset(padded_blocks()[0], teacher_topk_values=torch.zeros(4, S, 2))


# --------------------------------------------------------------------------- the script under torchrun

def _run(cmd, out, timeout):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return [json.loads((out / f"losses_rank{r}.json").read_text()) for r in range(len(list(out.glob("losses_rank*"))))]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_with_the_whole_batch(tmp_path):
    """2 ranks x 8 blocks under torchrun (gloo, CPU) against 1 process x 16 blocks, on blocks padded in
    different amounts (so each rank holds a different number of real tokens): the same losses step by
    step, the loss falls, and both ranks end with identical weights."""
    ids = tiny_token_blocks(64, 32, vocab_size=V, seed=5)
    lengths = torch.randint(8, 33, (64,), generator=torch.Generator().manual_seed(5))
    torch.save({"input_ids": ids, "attention_mask": (torch.arange(32) < lengths[:, None]).long()}, tmp_path / "data.pt")
    common = [str(SCRIPT), "--teacher", "tiny", "--student", "tiny", "--data", str(tmp_path / "data.pt"),
              "--steps", "20", "--lr", "1e-2", "--alpha", "0.5", "--temperature", "2", "--seed", "0"]
    start = time.perf_counter()
    ddp = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                *common, "--batch-size", "8", "--output-dir", str(tmp_path / "ddp")], tmp_path / "ddp", timeout=900)
    seconds = time.perf_counter() - start
    one = _run([sys.executable, *common, "--batch-size", "16", "--output-dir", str(tmp_path / "one")],
               tmp_path / "one", timeout=900)
    assert [r["rank"] for r in ddp] == [0, 1] and {r["world_size"] for r in ddp} == {2}
    assert ddp[0]["steps"] == 20 and ddp[0]["last_loss"] < 0.8 * ddp[0]["first_loss"]
    assert ddp[0]["student_sha256"] == ddp[1]["student_sha256"]
    # the global token mean: DDP with per-rank token counts gives the single-process batch of 16
    assert one[0]["world_size"] == 1
    assert ddp[0]["losses"] == pytest.approx(one[0]["losses"], rel=1e-4)
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / d / "student" / "model.safetensors")) for d in ("ddp", "one"))
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)
    print(f"torchrun run: {seconds:.1f} s")
