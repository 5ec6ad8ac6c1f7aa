# %% md slide
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/kd-course/kd-course/blob/main/notebooks/06_llm_distillation_speculative.ipynb)
#
# # 06 · Distilling a real LLM (part 1: token- and sequence-level KD)
#
# **Learning goals**
# - say what changes when the teacher is a language model: a distribution over a 49,152-token
#   vocabulary at every position, a tokenizer teacher and student must share, masks;
# - write the token-level loss over **real tokens only**, and choose between forward KL, reverse KL
#   and the generalised Jensen-Shannon divergence;
# - distil SmolLM2-135M-Instruct into a 7-layer student on Shakespeare, token by token (from the
#   teacher's cached top-k logits) and sequence by sequence (from the teacher's own answers);
# - train with a `transformers.Trainer` subclass, the same code that scales out with `torchrun`.

# %% code skip
# Setup, only on Colab (locally, `make setup` has done it): clone the course, install course_lib from
# the clone with the "llm" extra (transformers, gguf, accelerate, ...) and the offline teacher, and
# point COURSE_HOME at it, so exercises/ and the grade cell work as in a checkout.
import importlib.util
import os
import subprocess
import sys
if importlib.util.find_spec("google.colab") is not None:
    COURSE_HOME = "/content/kd-course"
    if not os.path.isdir(COURSE_HOME):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/kd-course/kd-course.git",
                        COURSE_HOME], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"{COURSE_HOME}[llm]"], check=True)
    subprocess.run(["bash", f"{COURSE_HOME}/scripts/install_assets.sh"], check=True)
    os.environ["COURSE_HOME"] = COURSE_HOME
    os.environ.setdefault("COURSE_ALLOW_DOWNLOAD", "1")

# %% code subslide
import torch
import matplotlib.pyplot as plt
from course_lib.profiles import configure_threads, environment_report, get_device, get_profile

configure_threads()
profile = get_profile()            # "quick" unless COURSE_PROFILE=full
device = get_device()
print(environment_report(profile, device))

# %% md slide
# ## What changes with a language model
#
# | | image classifier (notebooks 01-05) | causal language model |
# |---|---|---|
# | teacher output | 10 logits per image | 49,152 logits **per token** |
# | unit of the loss | an image | a next-token prediction; a sequence has hundreds |
# | padding | none | batches of unequal sequences are padded: those positions must not count |
# | shared space | the class list | the **tokenizer**: token-level KD needs the same vocabulary |
#
# The source article averages its KL over every position of the batch, padding included
# (`batchmean` over B x S). The course's losses average over real tokens only.

# %% code subslide
from course_lib import llm, llm_experiment

SETTINGS = llm_experiment.settings_for(profile)   # the quick profile's; the full one is not implemented yet
teacher, tokenizer = llm.load_teacher()           # offline: dequantised from the GGUF once, then cached
vocab = llm.shared_vocab_size(tokenizer, teacher)
print(f"teacher: SmolLM2-135M-Instruct, {sum(p.numel() for p in teacher.parameters()):,} parameters, "
      f"{teacher.config.num_hidden_layers} layers; vocabulary {vocab:,} (output rows "
      f"{llm.output_vocab_size(teacher):,})")
blocks = llm.token_blocks(tokenizer, block_size=SETTINGS.block_size, progress=False)
train, held_out = blocks
print(f"Shakespeare: {train.numel():,} training tokens ({len(train):,} blocks of {SETTINGS.block_size}), held out: "
      f"{', '.join(blocks.held_out_works)} ({held_out.numel():,} tokens)")
prompt = tokenizer("To be, or not to be", return_tensors="pt")
out = teacher.generate(**prompt, max_new_tokens=16, do_sample=False)
print("teacher, greedy:", repr(tokenizer.decode(out[0])))

# %% md slide
# ## The loss over real tokens
#
# Per position $i$ of a sequence the student's next-token distribution $q_i$ is compared with the
# teacher's $p_i$ (both at temperature $T$), and the mean is over the positions that count:
#
# $$\mathcal{L} = \frac{1}{|\mathcal{R}|}\sum_{i \in \mathcal{R}} T^2\, D(p_i \,\|\, q_i), \qquad
# \mathcal{R} = \{i : \text{token } i \text{ and token } i{+}1 \text{ are real}\}$$
#
# Padding changes the article's loss (it is in its mean) and the course's not at all:

# %% code subslide
from course_lib.llm_losses import shift_for_causal_lm, token_kd_loss

texts = ["Now is the winter of our discontent", "Friends, Romans, countrymen, lend me your ears; I come"]
tokenizer.padding_side = "right"
batch = tokenizer(texts, return_tensors="pt", padding=True)
student = llm.pruned_student(teacher, layers=SETTINGS.student_layers)
with torch.no_grad():
    t_logits = teacher(**batch).logits
    s_logits = student(**batch).logits
s_shift, labels = shift_for_causal_lm(s_logits, batch["input_ids"], batch["attention_mask"])
t_shift = t_logits[:, :-1]
ours = token_kd_loss(s_shift, t_shift, labels)
article = torch.nn.functional.kl_div(s_shift.log_softmax(-1).flatten(0, 1), t_shift.softmax(-1).flatten(0, 1),
                                     reduction="batchmean")
print(f"real next-token positions: {int((labels != -100).sum())} of {labels.numel()}")
print(f"forward KL over real tokens: {ours:.3f};  the article's batchmean over every position: {article:.3f}")

# %% md slide
# ## Forward KL, reverse KL, JSD: which mistakes each forgives
#
# - **forward** $\mathrm{KL}(p\,\|\,q)$ (Hinton's): the student must cover every token the teacher
#   gives mass to - *mean-seeking*;
# - **reverse** $\mathrm{KL}(q\,\|\,p)$: the student may drop teacher modes but must not put mass where
#   the teacher has none - *mode-seeking* (MiniLLM, Gu et al. 2024);
# - **generalised JSD** with $\beta$ (GKD, Agarwal et al. 2024, TRL's convention): the KLs of both to the
#   mixture $\beta p + (1-\beta) q$; bounded by $\log 2$ at $\beta = 0.5$; $\beta = 0$ and $1$ are defined
#   as the forward and reverse KL.
#
# Below, a one-peak student fits a two-peak teacher over 60 "tokens" under each divergence.

# %% code subslide tags=hide-input
from course_lib.llm_losses import token_divergence

tokens = torch.arange(60.0)
teacher_toy = torch.logsumexp(torch.stack([-(tokens - 15) ** 2 / 18, -(tokens - 42) ** 2 / 18 - 0.4]), 0)
fig, ax = plt.subplots(figsize=(10, 3.4))
ax.plot(tokens, teacher_toy.softmax(-1), "k", lw=3, label="teacher p")
for name, beta, color in [("forward_kl", 0.5, "tab:blue"), ("reverse_kl", 0.5, "tab:red"), ("jsd", 0.5, "tab:green")]:
    mean, log_std = torch.tensor(25.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    opt = torch.optim.Adam([mean, log_std], lr=0.1)
    for _ in range(400):
        q_logits = -(tokens - mean) ** 2 / (2 * log_std.exp() ** 2)
        loss = token_divergence(q_logits[None, None], teacher_toy[None, None], name, beta=beta).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ax.plot(tokens, q_logits.detach().softmax(-1), c=color, label=f"student fitted by {name}")
ax.set(xlabel="token id", ylabel="probability", title="One mode or both: forward KL covers, reverse KL picks")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% md slide
# ## Caching the teacher: top-k logits
#
# A full teacher distribution costs 49,152 floats per token (200 KB); 1,000 blocks of 128 tokens would
# take 25 GB. Keeping the teacher's top-$k$ log-probabilities and their indices costs $2k$ numbers. What
# truncation does: the teacher's tail is dropped and the rest renormalised, and the loss pushes the
# student's mass into those $k$ tokens.

# %% code subslide
from course_lib.llm_losses import topk_mass

with torch.no_grad():
    logits = teacher(input_ids=train[:4], use_cache=False).logits
ks = [1, 4, 16, 64, 256, 1024]
mass = [float(topk_mass(logits, k).mean()) for k in ks]
for k, m in zip(ks, mass):
    print(f"top-{k:<5} keeps {100 * m:5.1f}% of the teacher's probability on average; "
          f"{2 * k * 4 / 1024:7.2f} KB per token (full: {vocab * 4 / 1024:.0f} KB)")

# %% md slide
# ## Training with `DistillationTrainer`
#
# `course_lib.distill_trainer.DistillationTrainer` is a `transformers.Trainer` whose `compute_loss` is
# the masked token-level loss (from a live, frozen teacher or from cached top-k logits). Optimizer,
# gradient accumulation, logging and multi-process training are the Trainer's own, so the same script
# runs on one CPU or many GPUs:
#
# `torchrun --nproc_per_node 2 scripts/distill_llm.py --teacher tiny --student tiny --data tiny --steps 20`
#
# (CI runs exactly that on 2 CPU processes and checks that both end with identical weights.) Three live
# steps on the real models:

# %% code subslide
import tempfile
from transformers import TrainingArguments
from course_lib.distill_trainer import DistillationTrainer, TokenBlockDataset

with tempfile.TemporaryDirectory() as tmp:
    args = TrainingArguments(output_dir=tmp, max_steps=3, per_device_train_batch_size=2, learning_rate=3e-4,
                             logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    trainer = DistillationTrainer(model=student, args=args, teacher=teacher, divergence="forward_kl",
                                  train_dataset=TokenBlockDataset(train[:6]))
    trainer.train()
print("loss per step:", [round(e["loss"], 2) for e in trainer.state.log_history if "loss" in e])

# %% md slide
# ## The experiment (built once by `make setup`)
#
# A 7-layer student - teacher layers 0, 5, ..., 25, 29 with its embeddings, frozen (DistilBERT-style
# initialisation) - trained for a fixed number of steps (AdamW, constant learning rate after a short
# warm-up) on a few Shakespeare blocks seen several times, Hamlet held out: **alone** (cross-entropy),
# **forward KL** from the teacher's cached top-64 (every seed; half KD, half cross-entropy), **reverse
# KL** and **JSD** from the same cache, and **sequence-level** KD on the teacher's own continuations of
# the same blocks. A seed picks the blocks and their order. That takes minutes of CPU, so
# `python -m course_lib.llm_experiment` (run by `make setup`) does it once and caches the result; the
# cell below loads it and re-measures two of the students live.
#
# Why so few blocks: with 120 distinct blocks at this budget, which of KD and CE came out ahead changed
# with the seed (the calibration is in `course_lib/llm_experiment.py`). With 16 blocks seen 7.5 times the
# student trained alone over-fits them, and the teacher's distributions regularise it - notebook 02's
# few-labels regime again.

# %% code subslide
results = llm_experiment.load_results(SETTINGS)
settings = results["settings"]
print(f"the artifact: {llm_experiment.experiment(SETTINGS).name}, built in {results['build_seconds'] / 60:.1f} "
      f"minutes on {results['machine']}")
live = {}
for name, label in [("alone", "alone"), ("forward_kl", "forward KL")]:
    saved = llm_experiment.load_student(name, teacher, SETTINGS)
    live[label] = llm.perplexity(saved, llm_experiment.evaluation_blocks(held_out, settings["eval_blocks"]),
                                 progress=False)
cached = {r["name"]: r["perplexity"] for r in results["runs"] if r["seed"] == settings["seeds"][0]}
for label, ppl in live.items():
    print(f"{label:<12} held-out perplexity, live {ppl:.2f}; in the artifact {cached[label]:.2f}")
    assert abs(ppl - cached[label]) <= 1e-3 * cached[label], (label, ppl, cached[label])   # the artifact is this code's

# %% code skip
# the table (the deck shows it printed below)
import numpy as np

rows = results["runs"]
names = list(dict.fromkeys(r["name"] for r in rows))
seeds = settings["seeds"]
table = {n: {r["seed"]: r for r in rows if r["name"] == n} for n in names}

# %% code subslide
print(f"| student ({results['student']['trainable']:,} trainable parameters) | steps | "
      + " | ".join(f"seed {s}: perplexity / agreement" for s in seeds) + " | train seconds (seed 0) |")
print("|---|---|" + "---|" * len(seeds) + "---|")
print(f"| teacher | - | {results['teacher']['perplexity']:.1f} / 100 |" + " |" * (len(seeds) - 1) + " - |")
print(f"| student before training | 0 | {results['student']['perplexity']:.3g} / "
      f"{results['student']['top1_agreement']:.1f} |" + " |" * (len(seeds) - 1) + " - |")
for n in names:
    cells = [f"{table[n][s]['perplexity']:.1f} / {table[n][s]['top1_agreement']:.1f}" if s in table[n] else "-"
             for s in seeds]
    first = table[n][seeds[0]]
    print(f"| {n} | {first['steps']} | " + " | ".join(cells) + f" | {first['train_seconds']:.0f} |")
print(f"training: {settings['train_blocks']} blocks per seed, {settings['steps']} steps of {settings['batch_size']}; "
      f"held out: {settings['eval_blocks']} Hamlet blocks evenly spaced over the play; agreement: % of positions "
      f"where the student's top token is the teacher's")

# %% code subslide tags=hide-input
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
for n, color in zip(names, plt.cm.tab10.colors):
    r = table[n][seeds[0]]
    axes[0].plot(np.arange(1, len(r["losses"]) + 1), r["losses"], c=color, label=n)
axes[0].set(yscale="log", xlabel="step", ylabel="training loss (its own objective)", title=f"seed {seeds[0]}")
axes[0].legend(fontsize=7)
means = [np.mean([table[n][s]["perplexity"] for s in table[n]]) for n in names]
axes[1].barh(names, means, color=plt.cm.tab10.colors[:len(names)])
axes[1].axvline(results["teacher"]["perplexity"], c="k", ls=":", label="teacher")
axes[1].set(xscale="log", xlabel="held-out perplexity (mean over seeds; log scale)")
axes[1].invert_yaxis()
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% code skip
# The claims, with margins that are profile settings.
kd, alone = table["forward KL"], table["alone"]
if profile.claim("06.kd_beats_alone_steps"):
    assert all(kd[s]["perplexity"] < alone[s]["perplexity"] for s in seeds), (kd, alone)

# %% md slide
# ## Sequence-level KD: the teacher's own words
#
# Kim & Rush (2016) train the student with plain cross-entropy on the teacher's **outputs** instead of
# its distributions. Here the teacher continued the first 32 tokens of each training block greedily
# (`responses.jsonl` in the artifact); the student learned only the continuations.

# %% code subslide
import json

first = json.loads((llm_experiment.experiment(SETTINGS) / llm_experiment.RESPONSES_FILE).open().readline())
print("prompt:  ...", repr(first["prompt"][-160:]))
print("teacher:    ", repr(first["response"][:240]))

# %% md slide
# ## Reading the results
#
# Every figure in the table was measured by `course_lib.llm_experiment` (this machine's cached run);
# the two students above were re-measured live. Distillation against training alone, seed by seed:
# at **equal steps** (asserted) and at **equal wall time** - the alone run continued for as long as
# distillation took *including* the teacher's caching, the honest budget. With so few blocks, more
# steps of cross-entropy are not always better: watch which way the alone run moves.

# %% code subslide
for s in seeds:
    k, a, t = kd[s], alone[s], table["alone (equal wall time)"][s]
    print(f"seed {s}: forward KL {k['perplexity']:.1f} after {k['steps']} steps vs alone {a['perplexity']:.1f} "
          f"({100 * (k['perplexity'] / a['perplexity'] - 1):+.1f}%); at equal wall time ({t['target_seconds']:.0f} s) "
          f"alone reached {t['perplexity']:.1f} in {t['steps']} steps")
    verdict = "improved" if t["perplexity"] < a["perplexity"] else "got worse (it over-fits the blocks it repeats)"
    print(f"        alone with more steps {verdict}; its last training losses: {t['losses'][-3:]}, "
          f"forward KL's: {k['losses'][-3:]} (KD + CE)")
print("A student this small stays far from the teacher after so few steps: the table ranks objectives at a "
      "tiny budget with few data, it does not predict a long run on a large corpus.")

# %% md slide
# ## Common mistakes
#
# - **Averaging over padding** (the source article): the loss depends on how the batch was padded.
# - **Different tokenizers**: token-level KD compares distributions over the same vocabulary; the
#   losses refuse mismatched sizes, and trim a padded output matrix only when told the shared size.
# - **Forgetting the shift**: position $i$ predicts token $i+1$.
# - **A teacher in training mode or in the optimizer**: `DistillationTrainer` freezes it.
# - **Comparing at equal steps only**: a live teacher's forward pass costs as much as several student
#   steps; cache it, and count the cache.
# - **Dividing a micro-batch's mean by the accumulation steps**: with padding, accumulation then differs
#   from one big batch (the trainer normalises by the step's real tokens, as transformers does).

# %% md skip
# ## Results recorded

# %% code skip
from course_lib.results import record_many
figures = {
    "setting": {k: settings[k] for k in ("block_size", "batch_size", "steps", "topk", "lr", "eval_blocks")},
    "teacher_perplexity": results["teacher"]["perplexity"],
    "perplexity": {n: {str(s): r["perplexity"] for s, r in table[n].items()} for n in names},
    "top1_agreement": {n: {str(s): r["top1_agreement"] for s, r in table[n].items()} for n in names},
    "train_seconds": {n: {str(s): r["train_seconds"] for s, r in table[n].items()} for n in names},
    "live_perplexity": {k: round(v, 2) for k, v in live.items()},
    "headline": ["teacher_perplexity", f"perplexity.alone.{seeds[0]}", f"perplexity.forward KL.{seeds[0]}"],
}
record_many("06_llm_distillation_speculative", figures)

# %% md slide
# ## Exercises (graded)
#
# Open `exercises/ex06_llm_distillation.py` and implement what its docstrings describe: the masked
# token-level KL, the generalised JSD with its limits, and the causal shift. Grade with the cell below
# or `python -m course_lib.grading exercises --only ex06`. `course_lib.llm_losses` is printed *after*
# this exercise: try first, then compare.

# %% code skip
from course_lib.grading import self_check
self_check("ex06")

# %% md slide
# ## Summary and further reading
#
# - Token-level KD for LLMs is Hinton's loss per position, averaged over real tokens, on a shared
#   vocabulary; the divergence decides what the student may give up.
# - Caching the teacher's top-k turns distillation's cost into the student's; count it anyway.
# - Sequence-level KD needs only the teacher's outputs - the way to distil a model you can only query.
#
# Reading: Kim & Rush, *Sequence-Level Knowledge Distillation*, EMNLP 2016; Sanh et al., *DistilBERT*,
# 2019; Gu et al., *MiniLLM*, ICLR 2024; Agarwal et al., *On-Policy Distillation of Language Models
# (GKD)*, ICLR 2024.

# %% md slide
# ## The reference implementation (after the exercise)

# %% code skip
import inspect
from course_lib import llm_losses
print(inspect.getsource(llm_losses.token_divergence))
print(inspect.getsource(llm_losses.shift_for_causal_lm))
