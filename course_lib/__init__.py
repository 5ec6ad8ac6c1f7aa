"""course_lib: the companion package of the knowledge-distillation course.

Modules (one idea each; notebooks import one or two):

- ``profiles``  quick/full settings, device choice, threads, the environment report
- ``data``      Fashion-MNIST (Debian package) / CIFAR-100 (torchvision) as in-memory tensors
- ``models``    the CNN teacher, the small CNN student and a small ViT, parameter counts
- ``losses``    ``kd_loss`` (forward or reverse KL, masks for sequences), tempered softmax, entropy
- ``stacking``  several models of one architecture trained as one module (grouped layers or vmap)
- ``engine``    ``fit``: one train / distill / evaluate loop; a replaceable per-run objective
                (Hinton KD by default), per-run cached teacher logits, multi-head models, history,
                tqdm; ``extra_loss`` adds terms whose parameters are optimised with the students
- ``timing``    best-of-k wall-clock measurements, the epoch cost of distillation
- ``deit``      DeiT: a ViT with a real distillation token and head, hard/soft DeiT losses, an objective
- ``hooks``     ``FeatureCapture``: intermediate features by module path, hooks always removed;
                ``cache_features``: a frozen teacher's features, computed once
- ``features``  feature-based KD: FitNets hints (regressors on the student side, trained with it),
                attention transfer (paper and authors' code forms), relational KD (distance, angle)
- ``teachers``  the cached, re-evaluated teacher of each profile (a keyed artifact)
- ``online``    born-again generations, deep mutual learning, ensembles
- ``compress``  deployment, measured: bytes on disk, latency, accuracy; int8 (torch, ONNX Runtime), ONNX
- ``llm``       the offline LLM teacher (SmolLM2-135M-Instruct from GGUF, cached), pruned and fresh
                students sharing its tokenizer, Shakespeare token blocks, perplexity, top-1 agreement
- ``llm_losses`` token-level KD for LLMs over real tokens only: forward / reverse KL, generalised JSD,
                cached top-k teacher logits, vocabulary checks
- ``speculative`` speculative decoding (batch 1): a draft proposes K tokens, the target verifies them
                in one KV-cached pass; greedy and exact sampling, adaptive draft length, statistics,
                the expected tokens per call and speedup, greedy rounds predicted from one draft forward
- ``distill_trainer`` ``DistillationTrainer``: a ``transformers.Trainer`` subclass for token-level
                LLM distillation (live or cached top-k teacher), used by ``scripts/distill_llm.py``
- ``llm_experiment``, ``speculative_experiment``  notebook 06's students and its speculative-decoding
                measurements, built once by ``make setup`` (keyed artifacts)
- ``distilbert`` DistilBERT's recipe on MiniLM: layer-copy and re-initialised students, the triple
                loss (soft KL + CE + hidden-state cosine), a Trainer subclass, the fine-food reviews
                and their baselines (majority, TF-IDF + logistic regression in torch)
- ``distilbert_experiment`` notebook 08's runs (teacher, students, ablation, latency), built once by
                ``make setup`` (a keyed artifact)
- ``paths``     where files go: the repository in a checkout, else the working directory and the
                user's cache folder (``COURSE_CACHE``, ``COURSE_RESULTS`` override)
- ``artifacts`` heavy artifacts cached under a key of the settings, data and code that built them
- ``analysis``, ``plots``  soft-target statistics and the notebooks' figures
- ``results``   ``record(notebook, name, value)`` -> build/results.json -> report and README table
- ``grading``   a package: solutions -> exercises generator (``generate``), the autograder
                (``grader``; checks in ``grading/checks/``) and class gradebooks (``report``);
                student code runs in an isolated child process (``sandbox``, ``runner``, which
                never imports course_lib)
- ``netguard``  blocks non-loopback sockets when ``COURSE_OFFLINE=1``

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
