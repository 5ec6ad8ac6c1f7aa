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
three terms, ``L = w_kd * T^2 * KL(p_t^T || p_s^T) + w_ce * CE(y, p_s) + w_cos * (1 - cos(h_s, h_t))``.
A model's weights are its *state dict*: a dict from tensor names to tensors. In a
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

    The student is the teacher's architecture with ``len(kept_layers)`` encoder layers. Its encoder
    layer ``j`` starts as a copy of the teacher's layer ``kept_layers[j]``, so every teacher tensor

        bert.encoder.layer.{kept_layers[j]}.<rest>   becomes   bert.encoder.layer.{j}.<rest>

    (same ``<rest>``: ``attention.self.query.weight``, ``output.LayerNorm.bias``, ...): the student's
    layers are numbered ``0 .. len(kept_layers) - 1``, in the order of ``kept_layers``, NOT with the
    teacher's numbers (a ``BertForSequenceClassification`` with 3 layers has no ``layer.4``). The
    teacher's other layers are left out. Every tensor that does not belong to an encoder layer (the
    embeddings, the pooler, the classifier) is copied as it is: it maps to itself. A tensor belongs
    to encoder layer ``i`` iff its name starts with ``bert.encoder.layer.{i}.`` (with the final dot:
    ``bert.encoder.layer.1`` is also the start of ``bert.encoder.layer.10.``). The teacher has
    ``n`` encoder layers, ``n`` = 1 + the largest ``i`` among the names.

    The notebook then builds the student with ``student.load_state_dict({s: teacher_state[t] for s, t
    in sources.items()})``: ``load_state_dict`` *copies* the values into the student's own tensors,
    so training the student never changes the teacher. (``course_lib.encoder.layer_copy_map`` and
    ``layer_copy_student`` do the same from a model.)

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

    For each token ``(b, i)`` compare the two ``H``-dimensional vectors by their direction,

        d[b, i] = 1 - cos(h_s[b, i], h_t[b, i]),    cos(u, v) = (u . v) / (|u| |v|)

    (the cosine over the *features*, the last dimension: ``F.cosine_similarity(..., dim=-1)``; its
    default ``dim=1`` is the tokens of a ``[B, S, H]`` tensor), and average over the ``N`` real
    tokens of the batch:

        loss = (1 / N) * sum_{b, i : attention_mask[b, i] = 1} d[b, i]

    a mean over every real token of every sequence (not a mean of per-sequence means, which weighs a
    short review as much as a long one; not over all ``B * S`` positions, which counts the padding;
    not a sum). ``d`` lies in ``[0, 2]``: 0 when the two vectors point the same way (whatever their
    lengths), 1 when orthogonal, 2 when opposite; so does the loss. Without a mask every token is
    real: the mean over all ``B * S`` positions. If the mask has no real token, return 0 (a 0-dim
    tensor: the sum over no token divided by ``max(N, 1)``), not NaN.

    The teacher is a fixed target: detach it (``teacher_hidden.detach()``) so that no gradient reaches
    it; padding tokens get no gradient either. (``course_lib.encoder.hidden_cosine_loss`` does the
    same for one layer pair, and averages this loss over several pairs.)

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
    """DistilBERT's triple loss for a classifier:

        total = w_kd * T^2 * KL + w_ce * CE + w_cos * COS,      (w_kd, w_ce, w_cos) = weights

    * ``KL``: the forward KL divergence ``KL(p_t || p_s) = sum_c p_t(c) (log p_t(c) - log p_s(c))`` of
      the tempered distributions ``p_s = softmax(z_s / T)``, ``p_t = softmax(z_t / T)`` over the
      classes (the last dimension), averaged over the ``B`` examples. The ``T^2`` multiplies the KL
      only: it keeps the KL's gradient, which shrinks as ``1 / T^2``, on the scale of the CE's
      (Hinton et al. 2015). The teacher's distribution goes first. (With ``F.kl_div(input, target)``,
      ``input`` is the student's log-probabilities, ``target`` the teacher's probabilities, and its
      ``reduction="batchmean"`` is this mean; its default ``"mean"`` divides by ``B * C``.)
    * ``CE``: the cross-entropy of the student's *plain* logits (``T = 1``) with the labels, averaged
      over the batch (``F.cross_entropy(student_logits, labels)``).
    * ``COS``: the cosine loss of the paired hidden states over the real tokens of
      ``attention_mask``, exactly as ``hidden_cosine_loss`` above (you may call it).

    A term whose weight is 0 is not computed, and its inputs may then be ``None`` (weights
    ``(0, 1, 0)`` is plain fine-tuning on the labels: no teacher needed). The teacher is a fixed
    target: detach its logits and hidden states, so that no gradient reaches them. DistilBERT used
    ``(5, 2, 1)`` and ``T = 2`` (with a masked-LM CE); the course's default is ``(0.5, 0.5, 1.0)``.
    (``course_lib.encoder.triple_loss`` returns the same total, and the three terms.)

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
