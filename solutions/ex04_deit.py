"""Exercises for notebook 04: DeiT, a vision transformer student with a distillation token.

Implement each function below with plain ``torch`` (``torch.nn.functional`` is fine). Do not use
``course_lib`` (its ``deit`` module holds the reference answers the grader compares yours with): a
file that imports it scores zero. The grader runs this file in a separate process with a time
limit, and a function that modifies its input tensors in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex04")

or from the repository root with ``python -m course_lib.grading exercises --only ex04``.

Notation (Touvron et al. 2021, "Training data-efficient image transformers & distillation through
attention", arXiv:2012.12877): a ViT cuts an image into ``P`` patches and embeds each as a vector
of size ``D``; the patch tokens of a batch are ``[B, P, D]``. DeiT puts two learned tokens in front
of them, the class token and the *distillation token*, so the transformer reads ``P + 2`` tokens.
Each of the two tokens' final states feeds its own linear head: ``z_cls`` (the class head, trained on
the labels ``y``) and ``z_dist`` (the distillation head, trained on the teacher's logits ``z_t``),
all three ``[B, C]`` for ``C`` classes. ``alpha`` in ``[0, 1]`` weighs the distillation term and
``1 - alpha`` the class head's cross-entropy; ``tau > 0`` is the temperature of soft distillation.
"""
import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)


def insert_tokens(patch_tokens: torch.Tensor, cls_token: torch.Tensor, dist_token: torch.Tensor,
                  pos_embed: torch.Tensor) -> torch.Tensor:
    """Build DeiT's input sequence: class token, distillation token, patches, plus position embeddings.

    For every example of the batch, put the class token first, the distillation token second and
    the ``P`` patch tokens after them, then add the position embedding to the *whole* sequence
    (each of the ``P + 2`` positions, the two learned tokens included, has its own embedding):

        x[b] = [cls, dist, patch_1, ..., patch_P] + pos_embed[0]        (P + 2 tokens of size D)

    The two tokens are shared by the batch (shape ``[1, 1, D]``): broadcast them to ``[B, 1, D]``
    (``Tensor.expand``) before concatenating along the sequence dimension (``dim=1``). This is the
    layout of DeiT's code and of ``course_lib.deit.DeiT.embed``; the transformer then lets the
    distillation token attend to the patches and to the class token, and its final state (position
    1) feeds the distillation head.

    The source article of this course created a distillation token but never inserted it: its
    sequence stayed ``[cls, patches]`` (``P + 1`` tokens, a plain ViT's), so position 1, which it
    read as the "distillation" output, was the first patch token, and its token never received a
    gradient. Here the sequence has ``P + 2`` tokens and ``pos_embed`` has one row per token.

    Args:
        patch_tokens: ``[B, P, D]``, the embedded patches of a batch.
        cls_token: ``[1, 1, D]``, the learned class token.
        dist_token: ``[1, 1, D]``, the learned distillation token.
        pos_embed: ``[1, P + 2, D]``, the learned position embeddings, in the sequence's order
            (row 0 for the class token, row 1 for the distillation token, rows 2... for the patches).

    Returns:
        Tensor ``[B, P + 2, D]`` (the inputs are left unchanged, and gradients flow to all four).

    Raises:
        ValueError: if ``patch_tokens`` is not 3-dimensional, a token is not ``[1, 1, D]``, or
            ``pos_embed`` is not ``[1, P + 2, D]`` (a plain ViT's ``[1, P + 1, D]`` has no position
            for the distillation token).
    """
    ### BEGIN SOLUTION
    if patch_tokens.dim() != 3:
        raise ValueError(f"patch_tokens must be [B, P, D], got shape {tuple(patch_tokens.shape)}")
    b, p, d = patch_tokens.shape
    for name, token in (("cls_token", cls_token), ("dist_token", dist_token)):
        if token.shape != (1, 1, d):
            raise ValueError(f"{name} must be [1, 1, D] = [1, 1, {d}], got shape {tuple(token.shape)}")
    if pos_embed.shape != (1, p + 2, d):
        raise ValueError(f"pos_embed must be [1, P + 2, D] = [1, {p + 2}, {d}], got shape {tuple(pos_embed.shape)}")
    cls, dist = cls_token.expand(b, -1, -1), dist_token.expand(b, -1, -1)
    return torch.cat([cls, dist, patch_tokens], dim=1) + pos_embed
    ### END SOLUTION


def hard_distillation_loss(class_logits: torch.Tensor, dist_logits: torch.Tensor, labels: torch.Tensor,
                           teacher_logits: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """DeiT's hard-label distillation loss (Touvron et al. 2021, section 4, "hard-label distillation").

    The class head learns the true labels; the distillation head learns the teacher's *decision*,
    the class ``y_t = argmax_k z_t[k]`` the teacher finds most likely, as if it were a label:

        L_b = (1 - alpha) * CE(z_cls[b], y[b]) + alpha * CE(z_dist[b], y_t[b])
        L   = (1/B) * sum_b L_b

    with ``CE(z, k) = -log softmax(z)[k]`` (``F.cross_entropy``, temperature 1). DeiT uses
    ``alpha = 1/2`` and found this better than soft distillation in its ImageNet experiments (its soft
    runs used ``lambda = 0.1``, ``tau = 3``). The teacher's logits enter only
    through their argmax, so multiplying them by a positive constant does not change the loss; the
    target of the distillation head is an index, not the teacher's probabilities. Where the teacher
    disagrees with the label, the two heads are pulled towards different classes: that is the point
    of having two heads.

    Args:
        class_logits: ``[B, C]``, the class head's logits ``z_cls``.
        dist_logits: ``[B, C]``, the distillation head's logits ``z_dist``.
        labels: ``[B]`` integer class indices ``y``.
        teacher_logits: ``[B, C]``, the teacher's logits ``z_t`` (fixed: no gradient needed).
        alpha: weight in ``[0, 1]`` of the distillation head's term; ``alpha = 0`` trains the class
            head alone on the labels, ``alpha = 1`` the distillation head alone on the teacher.

    Returns:
        A scalar (0-dim) tensor, differentiable with respect to both heads' logits.
    """
    ### BEGIN SOLUTION
    ce_class = F.cross_entropy(class_logits, labels)
    ce_dist = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=-1))
    return (1 - alpha) * ce_class + alpha * ce_dist
    ### END SOLUTION


def soft_distillation_loss(class_logits: torch.Tensor, dist_logits: torch.Tensor, labels: torch.Tensor,
                           teacher_logits: torch.Tensor, alpha: float = 0.5,
                           temperature: float = 3.0) -> torch.Tensor:
    """DeiT's soft distillation loss: Hinton's KD term on the distillation head (Touvron et al. 2021).

    With ``p_t = softmax(z_t / tau)`` and ``p_dist = softmax(z_dist / tau)`` (over the classes):

        KL_b = sum_k p_t[b, k] * (log p_t[b, k] - log p_dist[b, k])        (KL(teacher || dist head))
        L    = (1/B) * sum_b [(1 - alpha) * CE(z_cls[b], y[b]) + alpha * tau^2 * KL_b]

    The KL is the *forward* one, teacher first, as in Hinton's loss (notebooks 01 and 02), averaged
    over the batch (``reduction="batchmean"``, not a sum and not a mean over ``B * C`` entries); the
    ``tau^2`` keeps the soft term's gradient from shrinking like ``1 / tau^2``. The cross-entropy is
    the class head's, on the labels, at temperature 1. Only the distillation head is distilled.

    If you use ``F.kl_div(input, target)``: its ``input`` must be the student's *log*-probabilities
    (``F.log_softmax(z_dist / tau, dim=-1)``) and its ``target`` the teacher's probabilities. Passing
    probabilities as ``input`` is a common mistake: it computes something that is not a KL divergence
    (its value is never positive).

    Args:
        class_logits: ``[B, C]``, the class head's logits ``z_cls``.
        dist_logits: ``[B, C]``, the distillation head's logits ``z_dist``.
        labels: ``[B]`` integer class indices ``y``.
        teacher_logits: ``[B, C]``, the teacher's logits ``z_t``.
        alpha: weight in ``[0, 1]`` of the distillation term.
        temperature: ``tau > 0``.

    Returns:
        A scalar (0-dim) tensor, differentiable with respect to both heads' logits.

    Raises:
        ValueError: if ``temperature <= 0``.
    """
    ### BEGIN SOLUTION
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_dist = F.log_softmax(dist_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_dist)).sum(dim=-1).mean()
    ce = F.cross_entropy(class_logits, labels)
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl
    ### END SOLUTION


def average_heads_prediction(class_logits: torch.Tensor, dist_logits: torch.Tensor) -> torch.Tensor:
    """DeiT's prediction at inference: the class with the largest mean of the two heads' logits.

    A trained DeiT has two heads; at test time DeiT's code averages their logits (late fusion) and
    predicts the most likely class of the average:

        prediction[b] = argmax_k (z_cls[b, k] + z_dist[b, k]) / 2

    This is not the class head alone, nor the mean of the two heads' predicted indices (the mean of
    class 2 and class 6 is not class 4): where the heads disagree, a third class that both rank
    high can win. (``course_lib.engine.prediction`` does the same for any model returning two heads.)

    Args:
        class_logits: ``[B, C]``, the class head's logits ``z_cls``.
        dist_logits: ``[B, C]``, the distillation head's logits ``z_dist``.

    Returns:
        Tensor ``[B]`` of integer (``torch.long``) class indices (the inputs are left unchanged).
    """
    ### BEGIN SOLUTION
    return ((class_logits + dist_logits) / 2).argmax(dim=-1)
    ### END SOLUTION
