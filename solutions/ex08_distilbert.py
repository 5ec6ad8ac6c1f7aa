"""Exercises for notebook 08: DistilBERT's recipe, the layer-copy student and the triple loss.

Implement each function below with plain ``torch`` (``torch.nn.functional`` is fine) and Python. Do
not use ``course_lib`` (its ``distilbert`` module holds the reference answers the grader compares
yours with): a file that imports it scores zero. The grader runs this file in a separate process
with a time limit, and a function that modifies its input tensors in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex08")

or from the repository root with ``python -m course_lib.grading exercises --only ex08``.

Notation. DistilBERT (Sanh et al. 2019, arXiv:1910.01108) makes its student from the teacher: the
same architecture with fewer encoder layers, *initialised* from the teacher's embeddings and from a
chosen subset of its layers (every other one: 0, 2, 4, 7, 9, 11 of BERT-base's 12), then trained on
three terms (notebook 08, "The triple loss"). A model's weights are its *state dict*: a dict from tensor
names to tensors. In a
``transformers.BertForSequenceClassification`` the names are ``bert.embeddings.*`` (token,
position and token-type embeddings and their LayerNorm), ``bert.encoder.layer.{i}.*`` for encoder
layer ``i = 0 .. n-1`` (16 tensors each: attention, feed-forward, two LayerNorms),
``bert.pooler.dense.*`` and ``classifier.*``. Hidden states are ``[B, S, H]``: ``B`` sequences of
``S`` tokens, one ``H``-dimensional vector per token; ``attention_mask`` ``[B, S]`` is 1 (or
``True``) at a real token and 0 at padding, as a tokenizer returns it. Logits are ``[B, C]`` (one
sequence, one prediction: the course distils a sentiment classifier).
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)


def student_layer_sources(teacher_keys: list[str], kept_layers: Sequence[int]) -> dict[str, str]:
    """DistilBERT's initialisation as a list of copies: ``{student tensor name: teacher tensor name}``.

    The student is the teacher's architecture with ``len(kept_layers)`` encoder layers, numbered
    ``0 .. len(kept_layers) - 1``: its layer ``j`` starts as a copy of the teacher's layer
    ``kept_layers[j]`` (every tensor of that layer, under the same name inside the layer). The
    teacher's other layers are left out; every tensor outside the encoder layers (the embeddings, the
    pooler, the classifier) is copied as it is. The teacher has ``n`` encoder layers, ``n`` = 1 + the
    largest layer index among the names; BERT-base has 12 (indices with two digits).

    The notebook then builds the student with ``student.load_state_dict({s: teacher_state[t] for s, t
    in sources.items()})``: ``load_state_dict`` *copies* the values into the student's own tensors,
    so training the student never changes the teacher.

    Example: a 6-layer teacher, ``kept_layers = (0, 2, 4)``: ``bert.encoder.layer.2.output.dense.weight``
    becomes the student's ``bert.encoder.layer.1.output.dense.weight``, ``classifier.bias`` stays
    ``classifier.bias``, and nothing comes from layers 1, 3 and 5.

    Args:
        teacher_keys: the names of the teacher's state dict (``list(teacher.state_dict())``), in any
            order.
        kept_layers: the teacher layers to keep, strictly increasing indices in ``0 .. n-1`` (a list
            or a tuple of ints).

    Returns:
        A ``dict`` from every name of the student's state dict to the name of the teacher tensor it
        copies (strings). The inputs are left unchanged.

    Raises:
        ValueError: if ``kept_layers`` is empty, not strictly increasing (unsorted, or an index
            repeated) or holds an index outside ``0 .. n-1``.
    """
    ### BEGIN SOLUTION
    prefix = "bert.encoder.layer."
    layer_of = {key: int(key[len(prefix):].split(".", 1)[0]) for key in teacher_keys if key.startswith(prefix)}
    n = max(layer_of.values(), default=-1) + 1
    kept = list(kept_layers)
    if not kept or any(b <= a for a, b in zip(kept, kept[1:])) or kept[0] < 0 or kept[-1] >= n:
        raise ValueError(f"kept_layers must be strictly increasing indices in 0..{n - 1} (the teacher has {n} "
                         f"encoder layers), got {kept_layers!r}")
    position = {i: j for j, i in enumerate(kept)}          # teacher layer -> student layer
    sources = {}
    for key in teacher_keys:
        if key not in layer_of:
            sources[key] = key                              # embeddings, pooler, classifier: as they are
        elif layer_of[key] in position:
            rest = key[len(prefix):].split(".", 1)[1]
            sources[f"{prefix}{position[layer_of[key]]}.{rest}"] = key
    return sources
    ### END SOLUTION


def hidden_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """DistilBERT's cosine loss between the student's and the teacher's hidden states, over the real tokens.

    Contract: each real token ``(b, i)`` contributes ``1 - cos`` of the angle between its two
    ``H``-dimensional vectors (the student's and the teacher's at that token), and the loss is the
    mean of these over the real tokens of the whole batch, every real token weighing the same
    (a long review counts more than a short one; padding counts not at all).

    What must hold (the grader checks these and the values): the loss lies in ``[0, 2]``; it is 0
    when every teacher vector is the student's times a positive number, 2 when every one points the
    opposite way; changing the hidden states at padding changes nothing; without a mask every token
    is real; a mask with no real token gives 0 (a 0-dim tensor), not NaN. The teacher is a fixed
    target: no gradient may reach ``teacher_hidden``, nor the student's padding positions.

    Args:
        student_hidden: ``[B, S, H]``, the student's hidden states (one layer's output).
        teacher_hidden: ``[B, S, H]``, the teacher's at the layer paired with it, on the same tokens.
        attention_mask: ``[B, S]``, 1 (or ``True``) at a real token, 0 at padding (long, bool or float),
            or ``None`` (every token is real).

    Returns:
        A 0-dim tensor, differentiable with respect to ``student_hidden`` (the inputs are left unchanged).

    Raises:
        ValueError: if the hidden states are not 3-D or their shapes differ (a narrower student needs a
            projection first), or ``attention_mask`` is not ``[B, S]``.
    """
    ### BEGIN SOLUTION
    if student_hidden.dim() != 3 or student_hidden.shape != teacher_hidden.shape:
        raise ValueError(f"expected two [B, S, H] hidden states of one shape, got {tuple(student_hidden.shape)} "
                         f"and {tuple(teacher_hidden.shape)}")
    if attention_mask is not None and attention_mask.shape != student_hidden.shape[:2]:
        raise ValueError(f"attention_mask must be [B, S] = {list(student_hidden.shape[:2])}, got "
                         f"{tuple(attention_mask.shape)}")
    distance = 1 - F.cosine_similarity(student_hidden, teacher_hidden.detach(), dim=-1)      # [B, S]
    if attention_mask is None:
        return distance.mean()
    real = attention_mask.bool()
    return distance[real].sum() / real.sum().clamp_min(1)
    ### END SOLUTION


def triple_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor | None,
                student_hidden: torch.Tensor | None, teacher_hidden: torch.Tensor | None,
                attention_mask: torch.Tensor | None = None, temperature: float = 2.0,
                weights: Sequence[float] = (0.5, 0.5, 1.0)) -> torch.Tensor:
    """DistilBERT's triple loss for a classifier, as notebook 08's section "The triple loss" defines it:
    the weighted sum ``w_kd * KD + w_ce * CE + w_cos * COS`` with ``(w_kd, w_ce, w_cos) = weights``, where

    * ``KD`` is ex02's soft term: the forward KL of the tempered distributions (teacher first), scaled
      as in Hinton's loss, averaged over the ``B`` examples;
    * ``CE`` the cross-entropy of the student's plain logits (temperature 1) with the labels, batch mean;
    * ``COS`` the cosine loss of the paired hidden states over the real tokens, as ``hidden_cosine_loss``
      (you may call it).

    Input cases (all checked): a term whose weight is 0 is not computed, and its inputs may then be
    ``None`` (weights ``(0, 1, 0)`` is plain fine-tuning: no teacher needed; ``(1, 0, 0)`` needs no
    labels and no hidden states); ``attention_mask=None`` means every token is real. The teacher is a
    fixed target: no gradient may reach its logits or hidden states. DistilBERT used ``(5, 2, 1)`` and
    ``T = 2`` (with a masked-LM CE); the course's default is ``(0.5, 0.5, 1.0)``.

    Args:
        student_logits: ``[B, C]``, the student's class logits ``z_s``.
        teacher_logits: ``[B, C]``, the teacher's ``z_t`` on the same examples (``None`` if ``w_kd == 0``).
        labels: ``[B]`` class indices (long) (``None`` if ``w_ce == 0``).
        student_hidden: ``[B, S, H]``, a student layer's hidden states (``None`` if ``w_cos == 0``).
        teacher_hidden: ``[B, S, H]``, the paired teacher layer's (``None`` if ``w_cos == 0``).
        attention_mask: ``[B, S]``, 1 at a real token and 0 at padding, or ``None`` (all real).
        temperature: ``T > 0``, for the KL term.
        weights: ``(w_kd, w_ce, w_cos)``, three numbers ``>= 0``, not all 0.

    Returns:
        A 0-dim tensor, the total, differentiable with respect to the student's logits and hidden
        states (the inputs are left unchanged).

    Raises:
        ValueError: if ``temperature <= 0``; ``weights`` is not three numbers, has a negative one or
            is all 0; ``student_logits`` is not 2-D, or (``w_kd > 0``) the teacher's logits have
            another shape; or (``w_cos > 0``) the hidden states are not two 3-D tensors of one shape.
    """
    ### BEGIN SOLUTION
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if len(weights) != 3:
        raise ValueError(f"weights must be three numbers (w_kd, w_ce, w_cos), got {weights!r}")
    w_kd, w_ce, w_cos = weights
    if min(weights) < 0 or w_kd == w_ce == w_cos == 0:
        raise ValueError(f"the weights must be >= 0 and not all 0, got {weights!r}")
    if student_logits.dim() != 2:
        raise ValueError(f"student_logits must be [B, C], got {tuple(student_logits.shape)}")
    total = student_logits.new_zeros(())
    if w_kd:
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                             f"{tuple(student_logits.shape)} differ in shape")
        log_ps = F.log_softmax(student_logits / temperature, dim=-1)
        log_pt = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).mean()
        total = total + w_kd * temperature ** 2 * kl
    if w_ce:
        total = total + w_ce * F.cross_entropy(student_logits, labels)
    if w_cos:
        if student_hidden.dim() != 3 or student_hidden.shape != teacher_hidden.shape:
            raise ValueError(f"expected two [B, S, H] hidden states of one shape, got "
                             f"{tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}")
        similarity = F.cosine_similarity(student_hidden, teacher_hidden.detach(), dim=-1)      # [B, S]
        distance = 1 - similarity
        if attention_mask is None:
            cos = distance.mean()
        else:
            real = attention_mask.bool()
            cos = distance[real].sum() / real.sum().clamp_min(1)
        total = total + w_cos * cos
    return total
    ### END SOLUTION


def bert_classifier_parameters(vocab_size: int, max_positions: int, type_vocab_size: int, hidden: int,
                               intermediate: int, layers: int, classes: int) -> int:
    """The number of parameters of a ``transformers.BertForSequenceClassification``, predicted from its
    configuration before any model is built.

    Work it out from the architecture the module docstring names: the embeddings (token, position,
    token-type, and their LayerNorm), ``layers`` encoder layers (self-attention with its output
    projection and LayerNorm, then a feed-forward block ``hidden -> intermediate -> hidden`` with its
    LayerNorm), the pooler (one ``hidden x hidden`` dense layer) and the classifier (``hidden ->
    classes``). Every linear layer has a bias, every LayerNorm a weight and a bias. Notebook 08's
    section "Size, speed and accuracy" then measures the teacher and the student: check your
    prediction against it (BERT-base: vocabulary 30,522, 512 positions, 2 token types, hidden 768,
    intermediate 3,072, 12 layers, 2 classes).

    Args:
        vocab_size, max_positions, type_vocab_size: the three embedding tables' rows.
        hidden: the hidden size ``H``.
        intermediate: the feed-forward block's inner size.
        layers: the number of encoder layers.
        classes: the number of classes.

    Returns:
        A Python ``int``.
    """
    ### BEGIN SOLUTION
    # Instructor's note: a layer is 4 (H^2 + H) for Q, K, V and the output projection, 2 (H I) + I + H for
    # the feed-forward block and 2 x 2H for its two LayerNorms; the embeddings and the pooler do not depend
    # on the depth, which is why a 6-of-12-layer copy keeps about 61%, not 50%, of BERT-base.
    h, i = hidden, intermediate
    embeddings = (vocab_size + max_positions + type_vocab_size) * h + 2 * h
    layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * (2 * h)
    pooler = h * h + h
    classifier = h * classes + classes
    return embeddings + layers * layer + pooler + classifier
    ### END SOLUTION


def why_every_other_layer() -> str:
    """A choice, with its reason: DistilBERT keeps layers 0, 2, 4, 7, 9, 11 of BERT-base's 12 rather than the
    first six (0-5). Which reason is right?

    - ``"faster"``: the kept layers are the cheapest of the twelve to run;
    - ``"smaller"``: the student ends up with fewer parameters than with the first six;
    - ``"depth"``: the copied stack still spans the teacher's computation, from its first layer to its last;
    - ``"generic"``: the first six layers are too generic to be worth keeping.

    Return the key (a ``str``).
    """
    ### BEGIN SOLUTION
    # Instructor's note: any 6 of the 12 identical layers cost the same time and parameters (see
    # bert_classifier_parameters); the reason is the function the copied stack computes: with 0-5 the
    # pooler would read layer 5's representation, which it was never trained on.
    return "depth"
    ### END SOLUTION
