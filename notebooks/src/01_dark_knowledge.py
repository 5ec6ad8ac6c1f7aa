# %% md slide
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{{COURSE_REPOSITORY}}/blob/{{COURSE_BRANCH}}/notebooks/01_dark_knowledge.ipynb)
#
# # 01 · Dark knowledge
#
# **Learning goals**
# - read a trained teacher's output as a probability distribution, and soften it with a temperature;
# - measure how the temperature flattens the soft targets (entropy vs temperature), and why the
#   entropy is not the information they carry;
# - see *which* wrong classes the teacher thinks are close: the "dark knowledge" of Hinton et al. (2015);
# - know which KL divergence `nn.KLDivLoss` really computes.
#
# Everything below is measured on a real teacher trained on real images (the profile's dataset,
# printed below: Fashion-MNIST in the quick profile, CIFAR-100 in the full one).

# %% code skip
# Setup, only on Colab (locally, `make setup` has done it): clone the course, install course_lib from
# the clone, and point COURSE_HOME at it, so exercises/ and the grade cell work as in a checkout.
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
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", COURSE_HOME], check=True)
    os.environ["COURSE_HOME"] = COURSE_HOME
    os.environ.setdefault("COURSE_ALLOW_DOWNLOAD", "1")   # torchvision downloads the data on Colab

# %% code subslide
import torch
import matplotlib.pyplot as plt
from course_lib.profiles import configure_threads, environment_report, get_profile

configure_threads()
profile = get_profile()            # "quick" unless COURSE_PROFILE=full
print(environment_report(profile))

# %% code skip
# how long the full profile (COURSE_PROFILE=full) should take on a free Colab GPU
from course_lib.estimate import full_profile_summary
print(full_profile_summary("01"))

# %% md slide
# ## The idea: softmax with a temperature
#
# A classifier's logits $z$ become probabilities with a softmax. Dividing the logits by a
# temperature $T$ first,
#
# $$p_i^{T} = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)},$$
#
# keeps the ranking of the classes but flattens the distribution as $T$ grows ($T \to \infty$:
# uniform; $T \to 0$: one-hot on the arg-max). At $T = 1$ a well-trained network is so confident
# that the small probabilities of the wrong classes are invisible. At higher $T$ they show: a shirt
# is "a bit like a T-shirt, a little like a coat, nothing like a sneaker". Hinton, Vinyals and Dean
# (2015) point at "the relative probabilities of incorrect answers" as what a big model has learnt
# about generalising; Hinton's 2014 talk named it **dark knowledge**. The student in notebook 02
# learns from it.

# %% md slide
# ## The teacher
#
# A CNN (three conv-BN-ReLU-pool blocks, a 256-unit head; its size is printed below) trained on the
# profile's training subset without augmentation. `make setup` trains it once and caches it
# (`python -m course_lib.teachers`); here we only load it and **evaluate it again on the test set**.

# %% code subslide
from course_lib.data import profile_data
from course_lib.engine import evaluate, predict_logits
from course_lib.models import count_parameters
from course_lib.teachers import pretrained_teacher

train, test = profile_data(profile)
teacher, teacher_info = pretrained_teacher(profile, train, test)
teacher_acc = evaluate(teacher, test)
classes = test.classes
print(f"train images: {len(train):,}  test images: {len(test):,}  classes: {len(classes)}")
print(f"teacher: {count_parameters(teacher):,} parameters, trained {teacher_info['epochs']} epochs "
      f"in {teacher_info['train_seconds']} s; test accuracy now: {teacher_acc:.2f}%")

# %% code skip
# The margins this notebook asserts are profile settings (`profile.claims`), calibrated in the quick profile.
assert teacher_acc > profile.claim("01.teacher_min_accuracy"), \
    "the cached teacher is not the trained one: rerun `python -m course_lib.teachers --retrain`"

# %% md slide
# ## One image at five temperatures

# %% code subslide
from course_lib.data import EXAMPLE_CLASS
from course_lib.losses import entropy, softmax_with_temperature
from course_lib.plots import tempered_softmax_bars

test_logits = predict_logits(teacher, test.x)
TEMPERATURES = [1, 2, 4, 8, 20]
EXAMPLE = EXAMPLE_CLASS[profile.vision.dataset]          # "Shirt" on Fashion-MNIST
shirt = classes.index(EXAMPLE)
# the first correctly classified example of that class (or its first example, if none is)
of_class = test.y == shirt
correct = of_class & (test_logits.argmax(1) == shirt)
example = int(torch.nonzero(correct if correct.any() else of_class)[0])
probs_by_t = {t: softmax_with_temperature(test_logits[example], t) for t in TEMPERATURES}

# %% code subslide
fig = tempered_softmax_bars(probs_by_t, classes, title=f"Teacher on test image {example} (true class: {EXAMPLE})")
plt.show()
for t, p in probs_by_t.items():
    top = p.argsort(descending=True)[:3]
    print(f"T={t:>2}: " + ", ".join(f"{classes[i]} {p[i]:.3f}" for i in top) + f"   entropy {entropy(p):.3f} nats")

# %% md slide
# ## Entropy grows with the temperature
#
# The mean entropy of the teacher's distribution over the test set, from almost 0 (one-hot) to
# $\log C$ nats for $C$ classes (uniform; the dashed line). The useful
# range for distillation is in between: soft enough to show the similarities, not so soft that
# everything is uniform. Entropy measures how flat the targets are, not how informative: it is
# largest for the uniform distribution, which says nothing about the image.

# %% code subslide
import math
import numpy as np
from course_lib.analysis import entropy_vs_temperature
from course_lib.plots import line_plot

t_grid = np.geomspace(0.5, 50, 25)
mean_entropy = entropy_vs_temperature(test_logits, t_grid)

# %% code subslide
fig = line_plot(t_grid, {"teacher, test set": mean_entropy.numpy()}, "temperature T",
                "mean entropy (nats)", "Entropy of softmax(z / T)", logx=True)
fig.axes[0].axhline(math.log(len(classes)), ls="--", c="gray", label=f"log {len(classes)} (uniform)")
fig.axes[0].legend()
plt.show()
entropy_at = {t: float(entropy_vs_temperature(test_logits, [t])) for t in TEMPERATURES}
print({t: round(h, 3) for t, h in entropy_at.items()})
print(f"at T=1 the mean entropy is {entropy_at[1] / math.log(len(classes)):.0%} of log {len(classes)}, "
      f"at T=20 {entropy_at[20] / math.log(len(classes)):.0%}")

# %% code skip
# a check of the code, not a claim: softmax(z / T) flattens as T grows, for any logits that are not all equal
assert all(a < b for a, b in zip(mean_entropy, mean_entropy[1:])), "entropy must grow with T"

# %% md slide
# ## Which classes does the teacher think alike?
#
# Average the teacher's tempered distribution over all test images of each true class:
# $S_{ck} = \operatorname{mean}_{i: y_i = c}\, p^{T}_k(x_i)$. The diagonal is "how sure", the
# off-diagonal entries are the dark knowledge. (Log colour scale: the small entries matter.)

# %% code subslide
from course_lib.analysis import class_similarity, most_similar_pairs
from course_lib.plots import heatmap

T_SIM = 4
similarity = class_similarity(softmax_with_temperature(test_logits, T_SIM), test.y, len(classes))
fig = heatmap(similarity, classes, classes, f"Mean soft target per true class (T = {T_SIM})", log=True)
plt.show()

# %% code subslide
pairs = most_similar_pairs(similarity, classes, k=max(6, profile.claim("01.top_pairs")))
for a, b, s in pairs:
    print(f"{a:>12} ~ {b:<12} {s:.3f}")

# %% code fragment
from course_lib.analysis import fraction_within_groups
from course_lib.data import class_groups, group_of

# Groups of similar classes (Fashion-MNIST: upper-body garments, footwear, trousers, bags;
# CIFAR-100: its 20 superclasses). The labels never told the teacher about them.
for g, members in class_groups(profile.vision.dataset).items():
    print(f"{g}: {', '.join(members)}")
groups = group_of(profile.vision.dataset)
k = profile.claim("01.top_pairs")
within = fraction_within_groups(pairs[:k], groups)
# the example class's nearest other class: blank out its own (diagonal) entry, then take the arg-max
row = similarity[shirt].clone()
row[shirt] = -1.0
nearest_to_shirt = classes[int(row.argmax())]
print(f"\n{within:.0%} of the {k} closest pairs lie inside one group; nearest class to {EXAMPLE}: {nearest_to_shirt}")

# %% code skip
# The closest pairs stay inside a group (the fraction is a profile claim): the teacher has learnt a
# similarity structure that the one-hot labels never told it.
assert within >= profile.claim("01.top_pairs_within_group"), pairs[:k]
if profile.claim("01.nearest_in_group"):
    assert groups[nearest_to_shirt] == groups[EXAMPLE], nearest_to_shirt

# %% md slide
# ## Which KL is it?
#
# Hinton's loss compares the student's and the teacher's tempered distributions with a KL
# divergence. PyTorch's `nn.KLDivLoss(reduction="batchmean")(input, target)` takes
# **log-probabilities of the student** as `input` and **probabilities of the teacher** as `target`,
# and returns, averaged over the batch (`"batchmean"`: the sum over classes and examples divided by
# the number of examples; the default `"mean"` also divides by the number of classes $C$),
#
# $$\sum_k p^T_{t,k}\,\big(\log p^T_{t,k} - \log p^T_{s,k}\big) = \mathrm{KL}(p_t \,\|\, p_s)$$
#
# the **forward** KL, *teacher* first. It is **mass-covering**: a class where the teacher puts
# probability and the student puts almost none costs a lot, so the student spreads its mass over
# everything the teacher considers possible. The **reverse** KL, $\mathrm{KL}(p_s \| p_t)$, is
# **mode-seeking**: it costs a lot where the *student* puts mass the teacher does not, so the student
# may concentrate on one of the teacher's modes and ignore the rest. The source article of this course
# writes the formula as the reverse one and then computes the forward one. Measure it:

# %% code subslide
import torch.nn as nn
import torch.nn.functional as F
from course_lib.losses import soft_target_kl
from course_lib.models import build_model

torch.manual_seed(0)
untrained_student = build_model("student_cnn", train)   # a student before any training
s_logits = predict_logits(untrained_student, test.x[:512])
t_logits = test_logits[:512]
T = 4.0
kldiv = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s_logits / T, -1), F.softmax(t_logits / T, -1))
forward = soft_target_kl(s_logits, t_logits, T, direction="forward").mean()
reverse = soft_target_kl(s_logits, t_logits, T, direction="reverse").mean()
print(f"nn.KLDivLoss(log p_s, p_t)  = {kldiv:.5f}")
print(f"KL(teacher || student)      = {forward:.5f}   <- what KLDivLoss computes")
print(f"KL(student || teacher)      = {reverse:.5f}")

# %% code skip
assert torch.allclose(kldiv, forward, rtol=1e-4, atol=1e-6) and not torch.allclose(kldiv, reverse, rtol=1e-2)

# %% md slide
# ## Results

# %% code skip
from course_lib.results import record_many

top_pairs = [f"{a} ~ {b}" for a, b, _ in pairs[:4]]
figures = {
    "teacher_test_accuracy": round(teacher_acc, 2),
    "teacher_parameters": count_parameters(teacher),
    "mean_entropy_by_T": {str(t): round(h, 4) for t, h in entropy_at.items()},
    "most_similar_pairs": top_pairs,
    "top_pairs_within_group": round(within, 3),
    "kldivloss_equals": "KL(teacher || student)",
    "kl_forward_T4": round(float(forward), 5),
    "kl_reverse_T4": round(float(reverse), 5),
    "headline": ["teacher_test_accuracy", "mean_entropy_by_T.1", "mean_entropy_by_T.4"],
}
record_many("01_dark_knowledge", figures)

# %% code
print("| temperature | " + " | ".join(str(t) for t in TEMPERATURES) + " |")
print("|---|" + "---|" * len(TEMPERATURES))
print("| mean entropy (nats) | " + " | ".join(f"{entropy_at[t]:.3f}" for t in TEMPERATURES) + " |")
print("closest pairs:", "; ".join(top_pairs))

# %% md slide
# ## Common mistakes
#
# - **Naming the KL the wrong way round.** `KLDivLoss(log_softmax(s/T), softmax(t/T))` is
#   KL(teacher ‖ student). Say so, and use `direction="reverse"` when you mean the other one.
# - **`log(softmax(z))` instead of `log_softmax(z)`.** At low temperature `softmax` underflows to 0
#   and its log is `-inf`; `log_softmax` stays finite (next cell).
# - **Hypothetical logits, unchecked printouts.** The article illustrates temperature on made-up
#   logits, and its printed example does not match its own code: at T = 1 it prints p(cat) 0.9833 and
#   entropy 0.123, where its code gives 0.9946 and 0.042 (checked by running the article's snippet).
#   A real teacher's soft targets (above), printed by the code that computed them, are what the
#   student actually sees.
# - **Quoting "typical results" instead of measuring them.** The article quotes tables of "typical"
#   results in several places that no code of it produced. Every figure in this course comes from the
#   run that prints it (and is recorded in `build/results.json`); a paper's number is quoted as such,
#   with its citation.

# %% code subslide
z = test_logits[example:example + 1]
naive = torch.log(F.softmax(z / 0.05, -1))
stable = F.log_softmax(z / 0.05, -1)
print("log(softmax):", naive.min().item(), "   log_softmax:", stable.min().item())

# %% code skip
assert torch.isinf(naive).any() and torch.isfinite(stable).all()

# %% md slide
# ## Exercises (graded)
#
# Open `exercises/ex01_dark_knowledge.py` (its docstrings give each function's contract, not the formula).
# The stretch task turns the entropy plot around: which temperature reaches a chosen mean entropy?
#
# | function | level | points | time | task |
# |---|---|---:|---:|---|
# | `softmax_with_temperature` | warm-up | 6 | ~10 min | implement |
# | `entropy` | warm-up | 5 | ~10 min | implement |
# | `soft_target_similarity` | core | 5 | ~15 min | implement |
# | `temperature_for_entropy` | stretch | 4 | ~25 min | apply |
#
# Grade with the cell below or `python -m course_lib.grading exercises --only ex01`; a wrong answer
# gets a hint naming its mistake. The course's own implementations are printed *after* this exercise.

# %% code skip
from course_lib.grading import self_check
self_check("ex01")      # grades exercises/ (the checkout's, or on Colab the clone's) in an isolated process

# %% md slide
# ## The reference implementations (after the exercise)
#
# What the notebook used above, from `course_lib.losses` (tested in `tests/test_losses.py`).

# %% code skip
import inspect
from course_lib import losses
print(inspect.getsource(losses.softmax_with_temperature))
print(inspect.getsource(losses.entropy))

# %% md slide
# ## Summary and further reading
#
# - A temperature softens a teacher's distribution; its mean entropy rises with T towards $\log C$
#   (the printed table: how close to 0 at T = 1 and to $\log C$ at T = 20 on this teacher).
# - The soft targets rank the wrong classes sensibly: the teacher's similarity structure
#   (tops with tops, footwear with footwear) is information that one-hot labels never carry.
# - `nn.KLDivLoss(reduction="batchmean")(log p_s, p_t)` is KL(teacher ‖ student), the mass-covering one.
#
# Reading: G. Hinton, O. Vinyals, J. Dean, *Distilling the Knowledge in a Neural Network*,
# arXiv:1503.02531 (2015) - on MNIST they report a distilled 2x800 net making 74 test errors vs 146
# for the same net trained alone (quoted from the paper, not measured here).
# C. Buciluǎ, R. Caruana, A. Niculescu-Mizil, *Model Compression*, KDD 2006.
