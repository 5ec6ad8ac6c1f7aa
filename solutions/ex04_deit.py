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

The ladder (notebook 04's exercise cell gives points and times): ``insert_tokens`` and
``average_heads_prediction`` (warm-up), the two losses (core), ``two_class_fusion`` (stretch: a short
derivation on paper, answered with a choice). The docstrings give each function's contract, not its
code; the grader names the common mistakes after a wrong answer.
"""
import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)


def insert_tokens(patch_tokens: torch.Tensor, cls_token: torch.Tensor, dist_token: torch.Tensor,
                  pos_embed: torch.Tensor) -> torch.Tensor:
    """Build DeiT's input sequence: the class token, the distillation token and the patches, with positions.

    Contract, for every example ``b`` of the batch: the result ``x[b]`` has ``P + 2`` tokens of size
    ``D``; position 0 holds the class token, position 1 the distillation token and positions
    ``2 ... P + 1`` the patch tokens in their order, and *every* position ``i`` (the two learned
    tokens' included) has row ``i`` of ``pos_embed`` added to it. The two tokens are shared by the
    whole batch. This is the layout of DeiT's code and of the notebook's ``DeiT.embed`` ("Is the
    token in the sequence?" shows what goes wrong when the distillation token never enters it).

    Consequences to check yours with (the grader checks them and the values):

    - with ``pos_embed = 0`` the result holds the tokens themselves, in that order;
    - with all tokens 0 it is ``pos_embed`` repeated for every example;
    - it works for any ``B >= 1`` and ``P >= 1`` (``P`` need not be a square: the function does not
      know the image's shape).

    Args:
        patch_tokens: ``[B, P, D]``, the embedded patches of a batch.
        cls_token: ``[1, 1, D]``, the learned class token.
        dist_token: ``[1, 1, D]``, the learned distillation token.
        pos_embed: ``[1, P + 2, D]``, the learned position embeddings, one row per position of the sequence.

    Returns:
        Tensor ``[B, P + 2, D]`` (the inputs are left unchanged, and gradients flow to all four).

    Raises:
        ValueError: if ``patch_tokens`` is not 3-dimensional, a token is not ``[1, 1, D]``, or
            ``pos_embed`` is not ``[1, P + 2, D]`` (a plain ViT's ``[1, P + 1, D]`` has no position
            for the distillation token); the message says which input is wrong.
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
    """DeiT's hard-label distillation loss, as notebook 04's section "The two distillation losses" defines
    it (Touvron et al. 2021, section 4), averaged over the batch.

    Contract: a weighted sum, weights ``1 - alpha`` and ``alpha``, of two cross-entropies at
    temperature 1: the class head's with the true labels, and the distillation head's with the
    teacher's *decision* (the one class the teacher finds most likely), taken as if it were a label.
    DeiT uses ``alpha = 1/2`` (the default).

    What must hold (the grader checks these and the values, for ``B`` from 1 to 32 and ``C`` from 3
    to 100): ``alpha = 0`` is the class head's cross-entropy with the labels alone; ``alpha = 1`` the
    distillation head's term alone; multiplying the teacher's logits by any positive constant
    (0.1 or 10) does not change the loss; the gradients with respect to both heads' logits are those
    of the same loss written with ``torch.autograd``.

    Args:
        class_logits: ``[B, C]``, the class head's logits ``z_cls``.
        dist_logits: ``[B, C]``, the distillation head's logits ``z_dist``.
        labels: ``[B]`` integer class indices ``y``.
        teacher_logits: ``[B, C]``, the teacher's logits ``z_t`` (fixed: no gradient needed).
        alpha: weight in ``[0, 1]`` of the distillation head's term.

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
    """DeiT's soft distillation loss: Hinton's loss of notebook 02 with the distillation head as the student,
    as notebook 04's section "The two distillation losses" writes it, averaged over the batch.

    Contract: a weighted sum, weights ``1 - alpha`` and ``alpha``, of the class head's cross-entropy
    with the labels (temperature 1) and the soft term of notebook 02's ``kd_loss`` between the teacher
    and the *distillation* head at temperature ``tau`` (the same divergence, in the same direction,
    with the same scale factor). Only the distillation head is distilled.

    What must hold (the grader checks these and the values, for ``B`` from 1 to 24 and ``C`` from 5
    to 100; the defaults are ``alpha = 0.5`` and ``tau = 3``): ``alpha = 0`` is the class head's
    cross-entropy alone; a distillation head equal to the teacher with ``alpha = 1`` gives exactly 0
    (and never a negative value) at any ``tau``; the gradients with respect to both heads' logits are
    those of the same loss written with ``torch.autograd``.

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
        ValueError: if ``temperature <= 0`` (checked before any division).
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
    """DeiT's prediction at inference from its two heads, the rule of DeiT's code that notebook 04's section
    "The idea" states (late fusion of the heads' *logits*).

    Contract: one predicted class per example, the class whose logit averaged over the two heads is
    the largest (``C`` scores per example, then one class). Where the heads disagree,
    a third class that both rank high can win (the grader's hand example has one); where they
    agree, that class is the prediction. It works for any ``B >= 1`` and ``C >= 2``.

    Args:
        class_logits: ``[B, C]``, the class head's logits ``z_cls``.
        dist_logits: ``[B, C]``, the distillation head's logits ``z_dist``.

    Returns:
        Tensor ``[B]`` of integer (``torch.long``) class indices (the inputs are left unchanged).
    """
    ### BEGIN SOLUTION
    return ((class_logits + dist_logits) / 2).argmax(dim=-1)
    ### END SOLUTION


def two_class_fusion() -> str:
    """A derivation on paper, answered with a choice: do DeiT's two fusion rules ever disagree with 2 classes?

    Notebook 04 ("The idea") notes that DeiT's code predicts from the mean of the two heads' logits
    (your ``average_heads_prediction``) while the paper's text adds the two heads' softmax outputs.
    With ``C >= 3`` classes the two rules can pick different classes. Now take ``C = 2`` (ties
    aside): write each head's probability of class 1 in terms of its two logits, and compare the
    conditions under which each rule predicts class 1.

    Return one key:

    - ``"always_agree"``: with two classes the two rules pick the same class for all logits;
    - ``"disagree_when_heads_disagree"``: they can differ whenever the heads prefer different classes;
    - ``"disagree_when_one_head_is_confident"``: they can differ when one head is much more confident
      than the other, as with three classes.

    Returns:
        One of the three keys (a ``str``).
    """
    ### BEGIN SOLUTION
    # Instructor's note: with two classes a head's probability of class 1 is sigmoid(a), a = z[1] - z[0].
    # The paper's rule picks class 1 iff sigmoid(a) + sigmoid(b) > 1 = sigmoid(b) + sigmoid(-b), i.e.
    # sigmoid(a) > sigmoid(-b), i.e. a + b > 0 (sigmoid is increasing): exactly the logit rule's
    # condition (z_cls + z_dist)[1] > (z_cls + z_dist)[0]. The rules first disagree at C = 3, where a
    # confident head can outweigh the other in probabilities but not in logits (the grader's hand example).
    return "always_agree"
    ### END SOLUTION
