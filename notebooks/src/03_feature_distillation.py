# %% md slide
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{{COURSE_REPOSITORY}}/blob/{{COURSE_BRANCH}}/notebooks/03_feature_distillation.ipynb)
#
# # 03 · Feature distillation and attention transfer
#
# **Learning goals**
# - capture intermediate features of any model by module path, with hooks that are always removed;
# - write the three families of "knowledge in the middle of the network": FitNets hints (with a
#   regressor that is *trained*), attention transfer, relational KD - and say where the losses used
#   here differ from the papers' (a cosine hint in one stage; AT in its authors' code form, half
#   their weight);
# - measure, on real data and several seeds, what each adds on top of Hinton's KD - and what it costs
#   per epoch;
# - recognise the source article's mistakes: adapters that are never optimised, and attention
#   transfer presented as "distilling Transformer attention maps" (AT works on a CNN's activations).

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
from course_lib.profiles import configure_threads, environment_report, get_device, get_profile

configure_threads()
profile = get_profile()            # "quick" unless COURSE_PROFILE=full
device = get_device()
print(environment_report(profile, device))

# %% code skip
# how long the full profile (COURSE_PROFILE=full) should take on a free Colab GPU
from course_lib.estimate import full_profile_summary
print(full_profile_summary("03"))

# %% md slide
# ## The idea: supervise the middle of the network
#
# Hinton's KD matches the teacher's *outputs*. The methods here also match what happens inside:
#
# - **FitNets hints** (Romero et al. 2015): a regressor $r$ maps the student's feature map $v_s$ to the
#   teacher's shape, and the student is pulled towards the teacher's map $u_t$:
#   $\;\mathcal{L}_{hint} = \frac12 \lVert u_t(x) - r(v_s(x)) \rVert^2$. The regressor belongs to the
#   **student** side and is trained with it. FitNets trains in two stages: first the student's layers
#   up to the hint, with $r$, on this loss alone; then the whole student with KD.
# - **Attention transfer** (Zagoruyko & Komodakis 2017), on a **CNN's activations** $A$ (channels x H x W):
#   collapse the channels into a spatial map $Q = \sum_c |A_c|^p$, normalise it, and match the maps
#   over layer pairs $j$: $\;\mathcal{L}_{AT} = \frac{\beta}{2} \sum_j
#   \big\lVert \hat Q_s^j - \hat Q_t^j \big\rVert_p$, with $\hat Q = Q / \lVert Q \rVert_2$.
#   No parameters (any channel counts), and no queries, keys or softmax: not a transformer's attention.
# - **Relational KD** (Park et al. 2019): match the *geometry of the batch* - distances between
#   examples (normalised by their mean) and angles between triplets - with a Huber loss.
#
# Each is added to Hinton's loss: $\mathcal{L} = \mathcal{L}_{KD} + \lambda\,\mathcal{L}_{feature}$.

# %% md slide
# ## Hooks: features by module path
#
# The article's configuration: a torchvision **ResNet-50** teacher (`layer2`, `layer3`, `layer4`) and a
# **MobileNetV3-Small** student (`features.4`, `features.9`, `features.12`). The article writes
# `models.resnet50(pretrained=True)`: deprecated since torchvision 0.13, still accepted with a warning
# in the pinned 0.29; use `weights=` (a checkpoint would download, so here `weights=None`: random
# weights, the shapes are what matter). `FeatureCapture` registers forward hooks on those paths -
# never rewrites `forward` - and removes them on exit.

# %% code subslide
import torchvision
from course_lib.hooks import FeatureCapture

teacher_paths = ["layer2", "layer3", "layer4"]
student_paths = ["features.4", "features.9", "features.12"]
resnet = torchvision.models.resnet50(weights=None).eval()
mobilenet = torchvision.models.mobilenet_v3_small(weights=None).train()
size = 64 if profile.name == "quick" else 224          # a small input keeps the demo fast on a CPU
x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
with FeatureCapture(resnet, teacher_paths, detach=True) as t_cap, FeatureCapture(mobilenet, student_paths) as s_cap:
    with torch.no_grad():
        resnet(x)
    mobilenet(x)
for (tp, tf), (sp, sf) in zip(t_cap.features.items(), s_cap.features.items()):
    print(f"teacher {tp:<7} {tuple(tf.shape)!s:<20} student {sp:<12} {tuple(sf.shape)}")
print("hooks left after the with-block:", sum(len(m._forward_hooks) for m in resnet.modules()))

# %% code subslide
try:
    FeatureCapture(mobilenet, ["features.13"])
except KeyError as error:
    print("a wrong path fails at once:", error)

# %% md slide
# ## One optimisation step, done right and done as in the article
#
# Right: one 1x1-convolution regressor per layer pair, **student channels -> teacher channels**, and
# the optimiser gets the student's parameters *and* the regressors'. The article's version puts
# adapters in the loss module, maps teacher -> student, and optimises only `student.parameters()`.

# %% code subslide
import torch.nn as nn
from course_lib.features import ArticleFeatureLoss, attention_transfer_loss, hint_loss
from course_lib.hooks import resize

s_feats, t_feats = list(s_cap.features.values()), list(t_cap.features.values())
regressors = nn.ModuleList(nn.Conv2d(s.shape[1], t.shape[1], 1) for s, t in zip(s_feats, t_feats))
before = [r.weight.detach().clone() for r in regressors]
opt = torch.optim.SGD([*mobilenet.parameters(), *regressors.parameters()], lr=0.1)
loss = sum(hint_loss(r(s), t) for r, s, t in zip(regressors, s_feats, t_feats))
loss = loss + attention_transfer_loss(s_feats, t_feats)          # no parameters: any channel counts
loss.backward()
opt.step()
print(f"hint + AT loss {loss.item():.4f}; regressor weights changed by the step:",
      [f"{(r.weight - b).abs().max().item():.2e}" for r, b in zip(regressors, before)])

# %% code subslide
article = ArticleFeatureLoss([s.shape[1] for s in s_feats], [t.shape[1] for t in t_feats])
adapters_before = [a.weight.detach().clone() for a in article.adapters]
article_opt = torch.optim.SGD(mobilenet.parameters(), lr=0.1)        # the article: student only
with FeatureCapture(mobilenet, student_paths) as cap:
    mobilenet(x)
    student_maps = list(cap.features.values())
    article_loss = article(student_maps, [resize(t, s.shape[-2:]) for s, t in zip(student_maps, t_feats)])
article_loss.backward()
article_opt.step()
article_unchanged = all(torch.equal(a.weight, b) for a, b in zip(article.adapters, adapters_before))
print(f"article's loss {article_loss.item():.4f}; its adapters unchanged after the step: {article_unchanged}")

# %% code skip
assert all(not torch.equal(r.weight, b) for r, b in zip(regressors, before)) and article_unchanged

# %% md slide
# ## The experiment: what do feature losses add to KD?
#
# The teacher and student of notebook 02 (a CNN with BatchNorm, a small CNN without), the same
# class-balanced training subset, no augmentation - so the teacher's **features are cached once**,
# like its logits, and every epoch reads rows of tables. Methods, on every seed:
#
# - alone; KD ($T=4$, $\alpha=0.9$);
# - KD + FitNets hint: student `conv2` (32 channels) -> teacher `features.7` (64 channels, same spatial
#   size: a quarter of the image's side), 1x1 regressor;
# - KD + attention transfer on two pairs (`conv1`/`features.3` at half the image's side, `conv2`/`features.7`);
# - KD + RKD on the logits: distance term (weight 25) and, where the profile affords it, the angle
#   term (weight 50; it compares all batch^3 triplets, so the quick profile switches it off to keep
#   its time budget: RKD-D, one of the paper's variants).
#
# The epochs (a profile setting) are fewer than notebook 02's, to fit the time budget; the question
# is what the feature terms add *on top of KD* at this length.

# %% md slide
# ## The losses as used here, not as in the papers
#
# - **Hint**: `hint_loss(normalize="l2")`, per image
#   $\lVert r/\lVert r\rVert - u/\lVert u\rVert \rVert^2 = 2\,(1 - \cos(r, u))$ - a cosine loss, blind to
#   the features' scale - with weight 1, added to KD **from the first step**. FitNets: the squared
#   error $\frac12\lVert u - r \rVert^2$, and a hint stage *before* KD.
# - **AT**: the authors' code form, $\frac{\beta}{2} \sum_j \mathrm{mean}_{b,i}\,(\hat Q_s^j - \hat Q_t^j)_i^2$,
#   $\beta = 1000$. Their `cifar.py` adds `beta * sum` of the same terms: at the same $\beta$ ours
#   weighs **half** as much. The paper: $\frac{\beta}{2}$ times the norm of the difference (not
#   squared), with $\beta$ divided by the map's size and the batch size.
# - **RKD**: weights 25 (distance) and 50 (angle), the defaults of RepDistiller's `RKDLoss`, on the
#   logits; RKD-D alone where the profile switches the angle term off.

# %% code subslide
import time
from course_lib.data import profile_data
from course_lib.engine import Execution, RunSpec, TrainConfig, cache_logits, evaluate, fit
from course_lib.features import TEACHER_CNN_PAIRS, attention_objective, cache_features, hint_objective, rkd_objective
from course_lib.models import build_model, count_parameters
from course_lib.teachers import pretrained_teacher

train, test = profile_data(profile)
teacher, teacher_info = pretrained_teacher(profile, train, test)
teacher_acc = evaluate(teacher, test)
student_train = train.subset(profile.vision.student_train_size, seed=0)
t0 = time.perf_counter()
teacher_logits = cache_logits(teacher, student_train)
tables = cache_features(teacher, student_train, list(TEACHER_CNN_PAIRS.values()))
cache_seconds = time.perf_counter() - t0
make_student = lambda: build_model("student_cnn", train)
print(f"teacher {count_parameters(teacher):,} params, test accuracy {teacher_acc:.2f}%; "
      f"student {count_parameters(make_student()):,} params, {len(student_train):,} training images")
print(f"teacher logits and features cached in {cache_seconds:.2f} s:",
      {p: tuple(t.shape) for p, t in tables.items()})

# %% code subslide
SEEDS = profile.vision.seeds
T, ALPHA = 4.0, 0.9
config = TrainConfig.from_profile(profile, epochs=profile.vision.feature_epochs, eval_every=0)
execution = Execution(device=device)
kd_specs = [RunSpec("kd", s, T, ALPHA) for s in SEEDS]
by_layer = {s_path: tables[t_path] for s_path, t_path in TEACHER_CNN_PAIRS.items()}
methods = {
    "kd + hint": hint_objective({"conv2": by_layer["conv2"]}),
    "kd + AT": attention_objective(by_layer, form="code", beta=1000.0),
    "kd + RKD": rkd_objective(teacher_logits, distance_weight=25.0, angle_weight=profile.vision.rkd_angle_weight),
}
runs = fit(make_student, [RunSpec("alone", s) for s in SEEDS] + kd_specs, student_train, config,
           teacher_logits=teacher_logits, test=test, execution=execution, desc="alone + kd")
for name, objective in methods.items():
    runs += fit(make_student, [RunSpec(name, s, T, ALPHA) for s in SEEDS], student_train, config,
                teacher_logits=teacher_logits, extra_loss=objective, test=test, execution=execution, desc=name)
print(f"{len(runs)} students x {config.epochs} epochs in {sum(r.seconds for r in runs):.0f} s")
batch = config.batch_size
print(f"RKD angle weight in this profile: {profile.vision.rkd_angle_weight:g} (per batch of {batch}: "
      f"{batch ** 3:,} triplets for the angle term, {batch ** 2:,} pairs for the distance term)")

# %% md slide
# ## Results

# %% code subslide
import numpy as np
names = ["alone", "kd", *methods]
acc = {n: np.array([next(r.test_accuracy for r in runs if r.spec.name == n and r.spec.seed == s) for s in SEEDS])
       for n in names}
# seconds per student-epoch (stacked runs share a group's time equally)
cost = {n: np.mean([r.seconds for r in runs if r.spec.name == n]) / config.epochs for n in names}
print("| method | " + " | ".join(f"seed {s}" for s in SEEDS) + " | mean +- std | vs KD | s / student-epoch |")
print("|---|" + "---|" * len(SEEDS) + "---|---|---|")
for n in names:
    row = " | ".join(f"{a:.2f}" for a in acc[n])
    print(f"| {n} | {row} | {acc[n].mean():.2f} +- {acc[n].std(ddof=1):.2f} | "
          f"{(acc[n] - acc['kd']).mean():+.2f} | {cost[n]:.3f} ({cost[n] / cost['kd']:.1f}x KD) |")
print(f"| teacher | {teacher_acc:.2f} |")

# %% code subslide tags=hide-input
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
means = [acc[n].mean() for n in names]
axes[0].bar(names, means, yerr=[acc[n].std(ddof=1) for n in names], color="tab:blue", alpha=0.8, capsize=4)
axes[0].axhline(teacher_acc, ls="--", c="k", label="teacher")
axes[0].set(ylim=(min(means) - 2, teacher_acc + 1), ylabel="test accuracy (%)",
            title=f"{len(SEEDS)} seeds, {config.epochs} epochs")
axes[0].legend()
axes[1].bar(names, [cost[n] for n in names], color="tab:gray")
axes[1].set(ylabel="seconds per student-epoch", title="Cost (cached teacher logits and features)")
for ax in axes:
    ax.tick_params(axis="x", rotation=20)
plt.show()

# %% code skip
# The claims, asserted with margins that are profile settings (calibrated in the quick profile):
# KD beats the student alone on every seed; each feature loss stays within a band of KD's mean.
if profile.claim("03.kd_beats_alone"):
    assert (acc["kd"] > acc["alone"]).all(), acc
band = profile.claim("03.feature_within_kd")
if band is not None:
    for n in methods:
        assert abs(acc[n].mean() - acc["kd"].mean()) <= band, (n, acc[n], acc["kd"])

# %% md slide
# ## What these seeds show
#
# What to look for: is a difference larger than the seed-to-seed noise, and what does it cost? The
# cell below says it from the numbers above: a difference of two means over the seeds is called
# *within noise* when it is smaller than two standard errors (2 SE) of that difference.

# %% code subslide
def versus(a, b):
    d = acc[a].mean() - acc[b].mean()
    two_se = 2 * ((acc[a].var(ddof=1) + acc[b].var(ddof=1)) / len(SEEDS)) ** 0.5
    verdict = "within noise" if abs(d) < two_se else ("higher" if d > 0 else "lower")
    return (f"{a} - {b}: {d:+.2f} points, higher on {int((acc[a] > acc[b]).sum())} of {len(SEEDS)} seeds "
            f"({verdict}: 2 SE = {two_se:.2f})")


print(versus("kd", "alone"))
for n in methods:
    print(versus(n, "kd") + f", at {cost[n] / cost['kd']:.1f}x KD's epoch time")

# %% md slide
# ## What attention transfer looks at
#
# $Q = \sum_c A_c^2$ at the `conv2` / `features.7` layer, for a few test images: the teacher, an untrained student,
# the student distilled with KD only, and the one distilled with KD + AT (seed 0).

# %% code subslide tags=hide-input
from course_lib.features import attention_map
from course_lib.hooks import FeatureCapture

images = test.x[:4]
students = {"untrained student": make_student(),
            "KD student": next(r.model for r in runs if r.spec.name == "kd" and r.spec.seed == SEEDS[0]),
            "KD + AT student": next(r.model for r in runs if r.spec.name == "kd + AT" and r.spec.seed == SEEDS[0])}
maps = {}
with torch.no_grad():
    with FeatureCapture(teacher.eval(), ["features.7"]) as cap:
        teacher(images)
        feats = cap.features["features.7"]
        maps["teacher"] = attention_map(feats).unflatten(-1, feats.shape[-2:])
    for label, model in students.items():
        with FeatureCapture(model.eval(), ["conv2"]) as cap:
            model(images)
            feats = cap.features["conv2"]
            maps[label] = attention_map(feats).unflatten(-1, feats.shape[-2:])
fig, axes = plt.subplots(len(images), 1 + len(maps), figsize=(2.1 * (1 + len(maps)), 2.0 * len(images)))
for i in range(len(images)):
    axes[i, 0].imshow(images[i].mean(0), cmap="gray")
    for j, (label, m) in enumerate(maps.items(), start=1):
        axes[i, j].imshow(m[i], cmap="viridis")
        if i == 0:
            axes[i, j].set_title(label, fontsize=9)
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()
plt.show()
agreement = {label: float((maps[label] * maps["teacher"]).flatten(1).sum(1).mean()) for label in students}
print("these images, cosine similarity with the teacher's maps:", {k: round(v, 3) for k, v in agreement.items()})

# %% code subslide
# What AT optimises, measured for every seed on held-out images: do the KD + AT student's maps agree
# with the teacher's more than the KD student's? (both AT layer pairs, cosine of the unit maps)
from course_lib.features import attention_agreement

held_out = test.x[:2000]
at_agreement = {name: np.array([attention_agreement(r.model, teacher, held_out, TEACHER_CNN_PAIRS).mean().item()
                                for s in SEEDS for r in runs if r.spec.name == name and r.spec.seed == s])
                for name in ("alone", "kd", "kd + AT")}
for name, values in at_agreement.items():
    print(f"{name:>8}: attention agreement with the teacher " + ", ".join(f"{v:.3f}" for v in values)
          + f" (seeds {', '.join(map(str, SEEDS))})")
closer = at_agreement["kd + AT"] - at_agreement["kd"]
print(f"KD + AT - KD: {', '.join(f'{d:+.3f}' for d in closer)} -> AT's students look "
      f"{'more' if (closer > 0).all() else 'NOT always more'} like the teacher on every seed")

# %% code skip
margin = profile.claim("03.at_attention_gain_min")
if margin is not None:       # the measured quantity AT targets: KD + AT above KD by this margin, every seed
    assert (at_agreement["kd + AT"] - at_agreement["kd"]).min() >= margin, at_agreement

# %% md slide
# ## Common mistakes
#
# - **Adapters that are never trained.** The article's adapters live in the loss and only
#   `student.parameters()` reach the optimiser: they stay at their random initial values (shown above).
#   Put the regressor on the student side and give it to the optimiser (`fit` does: an `extra_loss`'s
#   parameters are optimised with the students').
# - **Attention transfer is not transformer attention.** The article calls AT "distilling Transformer
#   attention maps" and says DeiT distils attention maps. AT's map is computed from a CNN's
#   activations ($\sum_c |A_c|^p$); DeiT distils the teacher's *output* through a distillation token
#   (notebook 04).
# - **Mixing the two attention forms.** The paper sums $|A_c|^p$ over channels, takes the norm of the
#   difference and weighs it $\beta/2$; the authors' code averages $A_c^2$, squares the difference and
#   weighs it `beta * sum`. Both forms are in `course_lib.features` (`form="paper"` / `"code"`): say
#   which form and which weight you report.
# - **Claiming a gain without seeds and without the cost.** A feature loss that moves accuracy by less
#   than the seed-to-seed spread, at a higher epoch cost, is not an improvement.

# %% md slide
# ## Not a mistake: the article's loss accumulator
#
# The article starts from `total_loss = torch.tensor(0.0)`, a 0-dim CPU tensor, and adds each term
# out of place: `total_loss = total_loss + ...`. PyTorch treats a 0-dim CPU tensor as a number that
# may join a tensor on any device: the sum lands on the features' device (a GPU's, on a GPU). Without
# a GPU, the `meta` device (shapes, no data) stands in below; the rule is the same.

# %% code subslide
where = device if device.type != "cpu" else torch.device("meta")
shapes = [((2, 16, 14, 14), (2, 32, 14, 14)), ((2, 32, 7, 7), (2, 64, 7, 7))]     # (student, teacher) per layer
terms = [attention_transfer_loss([torch.randn(s, device=where)], [torch.randn(t, device=where)]) for s, t in shapes]
total_loss = torch.tensor(0.0)                      # the article's accumulator: 0-dim, on the CPU
for term in terms:
    total_loss = total_loss + term                  # out of place, as in the article
print(f"terms on {terms[0].device}; the article's total on {total_loss.device}")

# %% code skip
assert total_loss.device == terms[0].device

# %% md skip
# ## Results recorded

# %% code skip
from course_lib.results import record_many
figures = {
    "setting": {"epochs": config.epochs, "temperature": T, "alpha": ALPHA, "student_train_images": len(student_train),
                "hint": "conv2 -> features.7, 1x1 regressor, l2-normalised (2(1 - cos)), weight 1, one stage",
                "attention": "conv1/features.3 + conv2/features.7, code form, beta 1000 (beta/2 * sum)",
                "rkd": f"logits, distance 25, angle {profile.vision.rkd_angle_weight:g}"},
    "teacher_accuracy": round(teacher_acc, 2),
    "seeds": {str(s): {n: round(float(acc[n][i]), 2) for n in names} for i, s in enumerate(SEEDS)},
    "mean": {n: round(float(acc[n].mean()), 2) for n in names},
    "std": {n: round(float(acc[n].std(ddof=1)), 2) for n in names},
    "seconds_per_student_epoch": {n: round(float(cost[n]), 4) for n in names},
    "cost_over_kd": {n: round(float(cost[n] / cost["kd"]), 2) for n in names},
    "attention_cosine_with_teacher": {k: round(v, 4) for k, v in agreement.items()},
    "headline": ["mean.kd", "mean.kd + hint", "mean.kd + AT", "mean.kd + RKD"],
}
record_many("03_feature_distillation", figures)

# %% md slide
# ## Exercises (graded)
#
# Open `exercises/ex03_feature_distillation.py` (its docstrings give each function's contract, not the
# formula). `choose_embedding_loss` asks which loss of this notebook fits a case it did not show.
#
# | function | level | points | time | task |
# |---|---|---:|---:|---|
# | `attention_map` | warm-up | 6 | ~15 min | implement |
# | `hint_loss_with_adapter` | core | 6 | ~20 min | implement |
# | `choose_embedding_loss` | core | 2 | ~10 min | choose |
# | `rkd_distance_loss` | stretch | 6 | ~25 min | implement |
#
# Grade with the cell below or `python -m course_lib.grading exercises --only ex03`; a wrong answer
# gets a hint naming its mistake. `course_lib.features` is printed *after* this exercise.

# %% code skip
from course_lib.grading import self_check
self_check("ex03")      # grades exercises/ (the checkout's, or on Colab the clone's) in an isolated process

# %% md slide
# ## Summary and further reading
#
# - Hooks read any layer of any model by path; a feature loss's parameters (FitNets regressors) must
#   be trained with the student.
# - On this data and budget, measured above on every seed: KD's gain over the student alone, and what
#   each feature loss adds on top of it, at what epoch cost.
# - Published picture, quoted (not measured here): RepDistiller's CIFAR-100 benchmark (Tian et al.,
#   *Contrastive Representation Distillation*, ICLR 2020) reports, without KD added, for
#   resnet32x4 -> resnet8x4: KD 73.33, FitNet 73.50, AT 73.44, RKD 71.90 (student alone 72.50); for
#   ResNet50 -> MobileNetV2: KD 67.35, FitNet 63.16, AT 58.58, RKD 64.43 (student alone 64.60).
#
# Reading: A. Romero et al., *FitNets: Hints for Thin Deep Nets*, ICLR 2015; S. Zagoruyko,
# N. Komodakis, *Paying More Attention to Attention*, ICLR 2017; W. Park et al., *Relational Knowledge
# Distillation*, CVPR 2019.

# %% md slide
# ## The reference implementations (after the exercise)

# %% code skip
import inspect
from course_lib import features
print(inspect.getsource(features.attention_map))
print(inspect.getsource(features.hint_loss))
