"""course_lib: the companion package of the knowledge-distillation course.

Five layers (README, "How the package is organised"; ``tests/test_layers.py`` checks them): a module
imports only from its own layer or a lower one, and there is no import cycle.

- **foundation**: ``paths`` (where files go), ``validation`` (clear errors for bad input), ``modes``
  (``eval_mode()``), ``netguard`` (no network when ``COURSE_OFFLINE=1``), ``profiles`` (quick/full
  settings, the cached experiments' included, devices, threads), ``artifacts`` (keyed caches),
  ``results`` (the results report), ``plots``, ``experiments`` (``CachedExperiment``: the protocol of
  the three cached experiments), ``trainers`` (``TeacherStudentTrainer``: the teacher-student
  ``transformers.Trainer`` base: teacher checks and freezing, cached columns, one loss normalisation)
- **image core** (notebooks 01-04): ``data`` (Fashion-MNIST / CIFAR-100 as tensors), ``losses``
  (``kd_loss``), ``vit`` and ``deit`` (a ViT; DeiT's distillation token and losses), ``models`` (the
  CNNs, ``build_model``), ``stacking`` (several models trained as one), ``engine`` (``fit``: the one
  train / distill / evaluate loop), ``hooks`` (``FeatureCapture``), ``timing``, ``teachers`` (the
  cached image teacher), ``analysis``
- **methods**: ``features`` (FitNets hints, attention transfer, RKD; 03), ``online`` (born-again,
  mutual learning, ensembles; 05), ``compress`` (deployment measured: size, latency, int8, ONNX; 07)
- **applications**: ``llm/`` (notebook 06: the GGUF teacher, students, corpus, evaluation,
  sequence-level KD's responses, token-level losses, the ``DistillationTrainer``, speculative
  decoding's acceptance rule, KV caches and generators, and the two cached experiments) and
  ``encoder/`` (notebook 08: MiniLM and its students, the reviews, the triple loss and its Trainer,
  baselines, the cached case study)
- **grading**: ``grading/`` (the exercise generator, the sandboxed autograder, its checks, gradebooks)

How the later notebooks fit: feature distillation and attention transfer are ``extra_loss``
modules reading ``FeatureCapture`` features (adapters on the student side, trained with it);
DeiT's two heads and mutual learning bring their own ``objective``; born-again generations pass
each seed's previous generation's cached logits as per-run ``teacher_logits``; the LLM notebooks
subclass ``transformers.Trainer.compute_loss`` with a padding-masked ``kd_loss``.

Each module holds one idea (profiles, data, models, losses, engine, ...); the notebooks import
from it. With ``COURSE_OFFLINE=1`` (set by the quick profile's runners: ``make course``,
``make test``) importing the package blocks every non-loopback network connection, so a
notebook that tries to download something fails at once with a clear message. It also sets
the Hugging Face offline switches (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``,
``HF_DATASETS_OFFLINE``; unless already set), so ``transformers`` loads local files instead of
trying the hub and running into the guard. Those are read when ``transformers`` /
``huggingface_hub`` are imported, so import ``course_lib`` first.
"""
import os as _os
import warnings as _warnings

# Without ipywidgets, tqdm.auto falls back to text progress bars in notebooks; that is what we want
# (widget output would need a CDN in the HTML export), so silence its warning about it.
_warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"

HF_OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

if _os.environ.get("COURSE_OFFLINE") == "1":
    from .netguard import block_network as _block_network

    for _switch in HF_OFFLINE_SWITCHES:
        _os.environ.setdefault(_switch, "1")

    _block_network()
