"""Notebook 08's full profile (bert-base-uncased on SST-2, 6-layer students), run offline on stand-ins:
a tiny 12-layer BERT saved to a folder (``teacher_model`` takes a hub id or a folder) with MiniLM's
uncased WordPiece tokenizer, and a few hundred made-up sentences in place of SST-2. What this proves:
the full settings' code path (12 teacher layers, DistilBERT's layers 0, 2, 4, 7, 9, 11, another data
set through ``load_texts``) runs end to end, in the experiment and in the notebook; not a figure."""
from __future__ import annotations

import dataclasses

import pytest

from course_lib.encoder import estimate, experiment, reviews
from course_lib.profiles import PROFILES
from _notebook_files import run_with_stand_in


STAND_IN = '''
import dataclasses, shutil, tempfile, torch
from pathlib import Path
from transformers import BertConfig, BertForSequenceClassification
from course_lib import profiles
from course_lib.encoder import reviews, students
from course_lib.encoder.reviews import Reviews

def tiny_bert(folder):
    """A random 12-layer BERT (hidden 16) with MiniLM's uncased WordPiece tokenizer, saved like a hub model."""
    folder = Path(folder)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=12, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertForSequenceClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(students.encoder_path() / name, folder / name)
    return str(folder)

WORDS = {1: ["good", "great", "moving", "funny", "warm"], 0: ["bad", "dull", "flat", "boring", "weak"]}

def stand_in_sst2(n_train=400, n_test=300):
    """Made-up movie sentences whose label a word decides (SST-2's shape: train and validation)."""
    def split(n, seed):
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 2, (n,), generator=g)
        texts = tuple(f"the film was {WORDS[int(y)][int(torch.randint(0, 5, (1,), generator=g))]} and long"
                      for y in labels)
        return Reviews(texts, labels)
    return split(n_train, 1), split(n_test, 2)

TINY = dict(max_length=16, batch_size=16, teacher_epochs=1, student_epochs=1, random_epochs=1, seeds=(0, 1),
            train_reviews=128, test_reviews=None, latency_length=16, latency_repeats=1)
'''

NOTEBOOK_CELL = STAND_IN + '''
reviews.DATASETS["sst2"] = stand_in_sst2
_full = profiles.PROFILES["full"]
profiles.PROFILES["full"] = dataclasses.replace(_full, encoder=dataclasses.replace(
    _full.encoder, teacher_model=tiny_bert(tempfile.mkdtemp(prefix="tiny-bert-")), **TINY))
'''


def _stand_ins(tmp_path, monkeypatch):
    namespace: dict = {}
    exec(STAND_IN, namespace)
    monkeypatch.setitem(reviews.DATASETS, "sst2", namespace["stand_in_sst2"])
    folder = namespace["tiny_bert"](tmp_path / "tiny-bert")
    return dataclasses.replace(PROFILES["full"].encoder, teacher_model=folder, **namespace["TINY"])


def test_the_full_settings_are_bert_base_on_sst2_with_distilberts_layers():
    full = PROFILES["full"].encoder
    assert (full.teacher_model, full.dataset, full.student_layers) == ("bert-base-uncased", "sst2", (0, 2, 4, 7, 9, 11))
    assert PROFILES["quick"].encoder.teacher_model is None and PROFILES["quick"].encoder.dataset == "reviews"
    assert "encoder" not in PROFILES["full"].planned
    with pytest.raises(ValueError, match="unknown dataset"):
        reviews.load_texts("imdb")


def test_the_experiment_runs_the_full_code_path_on_stand_ins(tmp_path, monkeypatch):
    settings = _stand_ins(tmp_path, monkeypatch)
    results = experiment.run_experiment(tmp_path / "artifact", settings, progress=False)
    assert results["data"] == {"train": 128, "test": 300, "truncated_share": results["data"]["truncated_share"]}
    assert len(results["runs"]) == len(experiment.student_runs(settings))
    teacher, student = results["teacher"]["parameters"], results["size_speed"]["student"]["parameters"]
    per_layer = estimate.layer_parameters(16, 32)
    assert teacher - student == 6 * per_layer                  # 12 layers -> DistilBERT's 6
    assert all(0 <= r["accuracy"] <= 100 for r in results["runs"])


def test_the_estimate_counts_every_run():
    full = PROFILES["full"].encoder
    flops = estimate.run_flops(full, 8000, hidden=768, intermediate=3072, teacher_layers=12)
    per_layer = estimate.layer_parameters(768, 3072)
    tokens = 8000 * full.max_length
    teacher = (full.teacher_epochs * 6 + 2) * 12 * per_layer * tokens
    epochs = sum(full.student_epochs if init == "copy" else full.random_epochs
                 for _, _, init, _ in experiment.student_runs(full))
    assert flops == pytest.approx(teacher + epochs * 6 * 6 * per_layer * tokens)
    assert estimate.gpu_minutes(flops, "T4") == pytest.approx(flops / (8.1e12 * 0.35) / 60)
    assert estimate.layer_parameters(768, 3072) == 7_087_872              # BERT-base: 85.1M in 12 layers
    with pytest.raises(ValueError):
        estimate.gpu_minutes(flops, "H100")


@pytest.mark.slow
def test_notebook_08_runs_on_the_full_profile_stand_ins(tmp_path, monkeypatch):
    name = "08_distilbert_case_study"
    printed, recorded = run_with_stand_in(name, NOTEBOOK_CELL, tmp_path, monkeypatch)
    assert "profile=full" in printed and "tiny-bert" in printed and "full profile on a Colab T4" in printed
    assert recorded[name]
