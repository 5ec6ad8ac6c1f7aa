"""Course profiles, device choice, seeding and the environment report.

Two profiles exist and they only change *sizes and sources*, never the code path:

* ``quick`` (default, what CI runs): CPU, offline, real Fashion-MNIST subsets, small real models;
  each notebook runs in minutes on a 2-core CPU (measured by every run: build/results.json, "suite").
  The teacher learns from ``train_size`` labelled images, the students from a ``student_train_size``
  subset of them for ``student_epochs`` epochs: KD needs long schedules to pay off, and a small
  subset with many epochs gives a clear, seed-robust result at a fraction of the cost (notebook 02
  measures the short schedule too).
* ``full`` (opt-in with ``COURSE_PROFILE=full`` or ``get_profile("full")``): GPU if present,
  standard datasets downloaded by torchvision (CIFAR-100), longer schedules, sized for a Colab
  T4 session per notebook (``course_lib.estimate``).

Every notebook starts with ``profile = get_profile(); print(environment_report(profile))``.
``get_device`` is the one place that picks a device (``engine.Execution`` defaults to it).
"""
from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import torch

PROFILE_ENV = "COURSE_PROFILE"


@dataclass(frozen=True)
class VisionSettings:
    """Sizes for the image notebooks (01-05, 07)."""

    dataset: str                 # "fashion_mnist" or "cifar100"
    train_size: int              # labelled images the teacher is trained on
    student_train_size: int | None  # the students' subset of those (None = all of them)
    test_size: int | None        # None = the full test split
    teacher_epochs: int
    student_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seeds: tuple[int, ...]
    eval_every: int              # evaluate on the held-out subset every k epochs
    monitor_size: int            # images of the test split used for the learning curves
    feature_epochs: int = 30     # notebook 03: KD + feature losses (five methods x seeds)
    # notebook 02's one-seed ablation around its main setting (T=4, alpha=0.9): the temperatures at
    # alpha=0.9 and the alphas at T=4 (alpha=0 is the student trained alone, already in the stack)
    ablation_temperatures: tuple[float, ...] = (1.0, 2.0, 8.0)
    ablation_alphas: tuple[float, ...] = (0.5, 1.0)
    # notebook 02's transfer set (Hinton et al. 2015): images whose labels the students never use,
    # drawn from the teacher's training images outside the students' subset; the headline run's
    # epochs over labelled + transfer rows, and the sizes compared at the main comparison's steps
    transfer_size: int = 8_000
    transfer_epochs: int = 28
    transfer_sweep: tuple[int, ...] = (2_000, 8_000)
    rkd_angle_weight: float = 50.0   # notebook 03: RKD's angle term costs O(batch^3) per step
    aug_teacher_epochs: int = 15     # notebook 04: the teacher trained on shifted / flipped images
    # notebook 04 (DeiT): the ViT students' labelled images, augmented views per image (the teacher's
    # logits are cached on them), epochs over the views (each shows every image deit_views times) and
    # the ViT's size (keyword arguments of models.ViT / deit.DeiT)
    deit_train_size: int | None = 500
    deit_views: int = 8
    deit_epochs: int = 20
    deit_vit: dict = field(default_factory=lambda: dict(patch_size=7, dim=32, depth=2, heads=4, mlp_ratio=2))
    # notebook 05 (born-again, mutual learning): the student architecture (models.build_model name) and
    # the epochs of every run (each generation, each peer, the KD student: one budget per model)
    ban_student: str = "student_cnn"
    ban_epochs: int = 50
    ban_generations: int = 3


@dataclass(frozen=True)
class LLMSettings:
    """Notebook 06, part 1 (:mod:`course_lib.llm.experiment`): the students distilled from SmolLM2."""

    teacher_model: str | None = None   # None: SmolLM2-135M-Instruct from its offline GGUF; else a hub id (or a folder)
    block_size: int = 128
    batch_size: int = 4
    steps: int = 30
    train_blocks: int = 16         # distinct training blocks per seed (seen steps * batch_size / train_blocks times)
    seeds: tuple[int, ...] = (0, 1)
    lr: float = 1e-3
    alpha: float = 0.5             # KD weight; 1 - alpha on the cross-entropy
    warmup_steps: int = 2
    topk: int = 64
    temperature: float = 1.0
    student_layers: tuple[int, ...] = (0, 5, 10, 15, 20, 25, 29)
    eval_blocks: int = 32          # held-out blocks evenly spaced over the held-out play
    prompt_tokens: int = 32        # sequence-level KD: the teacher continues this much of each block
    jsd_beta: float = 0.5


@dataclass(frozen=True)
class SpeculativeSettings:
    """Notebook 06, part 2 (:mod:`course_lib.llm.speculative_experiment`): speculative decoding, measured.
    ``llm``: the part-1 settings whose teacher is the target and whose students are the drafts; a
    profile's must be its ``llm`` (the experiment's ``settings_for`` checks it)."""

    prompts: int = 12                  # kept after the degeneracy screen (acceptance statistics)
    live_prompts: int = 4              # of those, decoded for the wall-clock figures
    candidates: int = 32               # held-out openings screened at most
    prompt_tokens: int = 48
    new_tokens: int = 32
    max_repeat: float = 0.25           # a continuation with more repeated 4-grams is degenerate
    simulate_k: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
    live_k: int = 1                    # the wall-clock K for every draft (the best predicted, at these acceptances)
    verify_tokens: tuple[int, ...] = (1, 2, 3, 4, 5, 7, 9)
    assistant_tokens: int = 20         # transformers 5's assisted-generation defaults
    confidence: float = 0.4
    prompt_lookup: int = 10
    timing_repeats: int = 7
    llm: LLMSettings = field(default_factory=LLMSettings)   # the default: the quick profile's


@dataclass(frozen=True)
class EncoderSettings:
    """Notebook 08 (:mod:`course_lib.encoder.experiment`): DistilBERT's recipe on MiniLM (quick) or
    bert-base-uncased on SST-2 (full)."""

    teacher_model: str | None = None          # None: all-MiniLM-L6-v2, offline; else a hub id (or a folder)
    dataset: str = "reviews"                  # "reviews" (Amazon fine food, offline) or "sst2" (GLUE, hub)
    # 48 tokens and one teacher epoch: the quick build's budget (about 12 CPU minutes against 20 at 64 tokens
    # and two epochs); calibrated on seeds 0-7 (every claim of notebook 08 held on each, see encoder.experiment)
    max_length: int = 48
    batch_size: int = 32
    teacher_epochs: int = 1
    teacher_lr: float = 5e-5
    student_epochs: int = 1
    student_lr: float = 1e-4
    random_epochs: int = 2                    # the randomly initialised students': from scratch needs more
    random_lr: float = 5e-4                   # steps and a higher learning rate (encoder.experiment's docstring)
    warmup_ratio: float = 0.1
    temperature: float = 2.0
    weights: tuple[float, float, float] = (0.5, 0.5, 1.0)   # (kd, ce, cos)
    student_layers: tuple[int, ...] = (0, 2, 4)
    seeds: tuple[int, ...] = (0, 1)
    train_reviews: int | None = None          # None: the whole training split (reviews: 4,000)
    test_reviews: int | None = None           # None: the whole test split (reviews: 1,000)
    latency_length: int = 128
    latency_repeats: int = 5


@dataclass(frozen=True)
class Profile:
    name: str
    vision: VisionSettings
    allow_download: bool
    # The margins the notebooks assert, as settings: "notebook.claim" -> threshold (or True for a
    # plain comparison). None = not asserted in this profile: the figure is measured, printed and
    # recorded, but no run has calibrated a margin for it (the full profile has not been run here).
    claims: dict[str, Any] = field(default_factory=dict)
    # the cached experiments' settings (course_lib.experiments); None = not implemented in this profile
    llm: LLMSettings | None = None
    speculative: SpeculativeSettings | None = None
    encoder: EncoderSettings | None = None
    # what a profile without one of those experiments would run there (said when it is asked for)
    planned: dict[str, str] = field(default_factory=dict)

    def claim(self, key: str) -> Any:
        """The threshold of claim ``key`` in this profile; None when it is not asserted here."""
        if key not in self.claims:
            raise KeyError(f"unknown claim {key!r}; known: {sorted(self.claims)}")
        return self.claims[key]

    def replace_vision(self, **changes) -> Profile:
        """A copy with some vision settings changed (used by tests and the benchmark)."""
        return dataclasses.replace(self, vision=dataclasses.replace(self.vision, **changes))


# Notebook 06 on a GPU: SmolLM2-360M-Instruct (32 layers of hidden 960, 15 heads, 5 KV heads, tied 49,152-row
# embeddings: 362M parameters) distilled into 8 of its layers spread over the 32, first and last kept:
# 8 x 9.8M + 47.2M of embeddings = about 126M parameters, the size of SmolLM2-135M (30 layers of 576).
# 200 steps of 8 blocks of 256 tokens from 256 blocks per seed (each seen 6.25 times), 64 held-out blocks:
# about 9 student runs of 0.4M tokens (6 x 126M x 0.4M = 3e14 FLOPs each), the teacher's top-k and its
# continuations: notebook 06 prints the estimate of course_lib.llm.estimate for a T4 (not measured).
FULL_LLM = LLMSettings(teacher_model="HuggingFaceTB/SmolLM2-360M-Instruct", block_size=256, batch_size=8, steps=200,
                       train_blocks=256, seeds=(0, 1), lr=3e-4, warmup_steps=10, topk=64,
                       student_layers=(0, 4, 9, 13, 18, 22, 27, 31), eval_blocks=64, prompt_tokens=64)

PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        vision=VisionSettings(
            dataset="fashion_mnist", train_size=10_000, student_train_size=2_000, test_size=None,
            # student_epochs: what keeps notebooks 01 + 02 within their 4-minute budget on a 2-core CPU;
            # every 02 claim is calibrated at this length
            teacher_epochs=10, student_epochs=70, batch_size=128, lr=3e-3, weight_decay=1e-2,
            seeds=(0, 1, 2), eval_every=10, monitor_size=2_000,
            # the alpha ablation (0.5 and 1) only in the full profile: it would cost notebook 02's time
            # budget here (alpha 0 and 0.9 are the main comparison's, so the quick plot has those two)
            ablation_alphas=(),
            ablation_temperatures=(1.0, 8.0),   # T = 2 only in the full profile: 02's 180 s budget
            rkd_angle_weight=0.0,   # RKD-D only: the angle term's O(batch^3) cost would break 03's time budget
        ),
        allow_download=False,
        llm=LLMSettings(), speculative=SpeculativeSettings(), encoder=EncoderSettings(),
        claims={
            "01.teacher_min_accuracy": 85.0,        # a trained teacher, not a stale cache
            "01.top_pairs": 4,                      # how many closest class pairs are checked ...
            "01.top_pairs_within_group": 1.0,       # ... and the fraction of them inside one group
            "01.nearest_in_group": True,            # the example class's nearest class shares its group
            "02.kd_beats_alone": True,              # on every seed
            "02.gap_recovered_min": 0.35,           # mean fraction of the teacher-student gap KD recovers
            "02.kd_beats_label_smoothing": True,    # on every seed
            "02.kd_beats_augmentation": True,       # on every seed
            "02.short_schedule_margin": 1.0,        # mean gain, long minus short schedule
            "02.short_schedule_kd_behind": True,    # short schedule: KD below alone on every seed
            "02.transfer_gap_recovered_min": 0.65,  # KD with the transfer set: gap recovered, every seed
            "03.kd_beats_alone": True,              # on every seed, at feature_epochs
            "03.feature_within_kd": 1.0,            # |mean(KD + feature loss) - mean(KD)| in points
            "03.at_attention_gain_min": 0.05,       # KD + AT minus KD: attention agreement with the teacher, every seed
            "04.teacher_views_gap_min": 10.0,       # augmentation-trained minus plain teacher, on the views
            "04.soft_beats_alone": True,            # DeiT soft (average of heads) > ViT alone on every seed
            "04.hard_gain_min": 0.75,               # mean gain of DeiT hard over ViT alone, in points
            "04.soft_dist_head_gain_min": 0.3,      # DeiT soft: distillation head - class head, mean over seeds
            # notebook 05: margins calibrated on seeds 0-5 and checked on seeds nobody tuned them on
            "05.kd_over_generations_min": 1.5,         # KD minus the best born-again generation, every seed
            "05.kd_over_ensembles_min": 1.0,           # KD minus the best two- or three-model ensemble, every seed
            "05.apart_ensemble_over_gen1_mean_min": 0.15,    # ensemble of students trained apart - gen 1, mean
            "05.generation_ensemble_over_apart_max": 0.25,   # ensemble of generations - same-size ensemble apart, mean
            # notebook 06: forward-KL distillation below training alone in held-out perplexity at equal
            # steps, on every seed of course_lib.llm.experiment
            "06.kd_beats_alone_steps": True,
            # part 2: the forward-KL draft's per-token acceptance (alpha) and its acceptance rate at K=2 above
            # the alone draft's, on both seeds of course_lib.llm.speculative_experiment (greedy: the same on every
            # run of the same students)
            "06.distilled_draft_accepted_more": True,
            # notebook 07 (deployment): accuracy only - latency is recorded, never asserted, and the size ratio
            # follows from parameter counts and bytes per weight (printed, not a claim)
            "07.deployed_within_teacher_points": 5.0,  # teacher accuracy - the fastest student variant's
            "07.int8_within_points": 1.0,            # |int8 - its fp32 source| for every int8 variant
            # notebook 08, on every seed of course_lib.encoder.experiment: the layer-copy distilled student
            # keeps this % of the teacher's test accuracy; copied layers beat random ones (both on labels only)
            "08.retained_min": 95.0,
            "08.copy_beats_random_labels_only": True,
            # ...and no run sits on one class (distilbert_experiment.class_collapse): a collapsed control would
            # make the claim above trivially true (it happened once, at the old random-start schedule)
            "08.no_one_class_runs": True,
        },
    ),
    "full": Profile(
        name="full",
        vision=VisionSettings(
            # the students learn from a fifth of the labels; the other 40,000 images are notebook 02's
            # transfer set (their labels unused)
            # Sized so that every notebook fits a Colab T4 session: about 30 minutes or less each, by
            # course_lib.estimate (every notebook prints its estimate; not measured on a GPU yet)
            dataset="cifar100", train_size=50_000, student_train_size=10_000, test_size=None,
            teacher_epochs=60, student_epochs=100, batch_size=128, lr=3e-3, weight_decay=5e-4,
            seeds=(0, 1, 2), eval_every=10, monitor_size=10_000,
            transfer_size=40_000, transfer_epochs=40, transfer_sweep=(10_000, 40_000),
            # 04: the students' 10,000 images x 4 views, 10 epochs (40 passes per image), a 6-layer ViT of
            # width 128 (DeiT-Ti's 12 layers of 192 on all 50,000 images would take about 10 hours on a T4)
            aug_teacher_epochs=60, deit_train_size=10_000, deit_views=4, deit_epochs=10,
            deit_vit=dict(patch_size=4, dim=128, depth=6, heads=4, mlp_ratio=4),
            # 05: born-again students of the teacher's own architecture (BAN's setting: the student is the
            # teacher's architecture), 60 epochs each; ResNet-18 students would take about 8 hours on a T4
            ban_student="teacher", ban_epochs=60,
        ),
        allow_download=True,
        # bert-base-uncased -> DistilBERT's 6 of its 12 layers on 8,000 SST-2 sentences (GLUE's 872 validation
        # sentences as the test set): sized for a Colab T4 (course_lib.encoder.estimate; notebook 08 prints it)
        encoder=EncoderSettings(teacher_model="bert-base-uncased", dataset="sst2", max_length=64, batch_size=32,
                                teacher_epochs=2, teacher_lr=2e-5, student_epochs=2, student_lr=5e-5,
                                random_epochs=3, random_lr=1e-4, student_layers=(0, 2, 4, 7, 9, 11),
                                seeds=(0, 1), train_reviews=8_000, test_reviews=None),
        # notebook 06: SmolLM2-360M-Instruct -> 8 of its 32 layers (FULL_LLM above); part 2's target is that
        # teacher and its drafts those students, on more and longer prompts
        llm=FULL_LLM,
        speculative=SpeculativeSettings(prompts=24, live_prompts=8, candidates=64, prompt_tokens=64, new_tokens=64,
                                        llm=FULL_LLM),
        claims={
            "01.teacher_min_accuracy": 20.0,        # 100 classes: chance is 1%
            "01.top_pairs": 10,
            "01.top_pairs_within_group": 0.3,       # CIFAR-100 superclasses; chance is 4/99
            "01.nearest_in_group": None,
            "02.kd_beats_alone": None,
            "02.gap_recovered_min": None,
            "02.kd_beats_label_smoothing": None,
            "02.kd_beats_augmentation": None,
            "02.short_schedule_margin": None,
            "02.short_schedule_kd_behind": None,
            "02.transfer_gap_recovered_min": None,
            "03.kd_beats_alone": None,
            "03.feature_within_kd": None,
            "03.at_attention_gain_min": None,
            "04.teacher_views_gap_min": None,
            "04.soft_beats_alone": None,
            "04.hard_gain_min": None,
            "04.soft_dist_head_gain_min": None,
            "05.kd_over_generations_min": None,
            "05.kd_over_ensembles_min": None,
            "05.apart_ensemble_over_gen1_mean_min": None,
            "05.generation_ensemble_over_apart_max": None,
            "06.kd_beats_alone_steps": None,
            "06.distilled_draft_accepted_more": None,
            "07.deployed_within_teacher_points": None,
            "07.int8_within_points": None,
            "08.retained_min": None,
            "08.copy_beats_random_labels_only": None,
            "08.no_one_class_runs": None,
        },
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile named ``name``, else ``$COURSE_PROFILE``, else ``quick``."""
    name = (name or os.environ.get(PROFILE_ENV) or "quick").strip().lower()
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} "
                         f"(set {PROFILE_ENV}=quick or {PROFILE_ENV}=full)")
    return PROFILES[name]


def get_device(prefer: str | None = None) -> torch.device:
    """The one place that picks a device: ``prefer`` if given, else cuda, then mps, then cpu."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def configure_threads() -> int:
    """Use one torch thread per available core and stop OpenMP threads from spin-waiting.

    Spin-waiting (the OpenMP default) made 2-thread CPU training many times slower on a 2-core machine
    whenever another process was busy, so ``OMP_WAIT_POLICY=PASSIVE`` is set if the caller has not
    chosen a policy. It only takes effect before OpenMP starts, so the Makefile also exports it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def _version(distribution: str) -> str:
    """Installed version, read from package metadata (importing transformers would cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def environment_report(profile: Profile | None = None, device: torch.device | None = None) -> str:
    """One line: profile, device, thread count and library versions."""
    profile = profile or get_profile()
    device = device or get_device()
    return (f"profile={profile.name} device={device} threads={torch.get_num_threads()} "
            f"python={platform.python_version()} torch={torch.__version__} "
            f"torchvision={_version('torchvision')} transformers={_version('transformers')}")
