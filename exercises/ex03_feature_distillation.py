# GENERATED from solutions/ex03_feature_distillation.py by `python -m course_lib.grading generate` - do not edit.
# (Course authors: edit solutions/ex03_feature_distillation.py and regenerate. Students: replace each
# `raise NotImplementedError` below with your code.)
"""Exercises for notebook 03: feature distillation (attention maps, FitNets hints, relational KD).

Implement each function below with plain ``torch`` (``torch.nn.functional`` is fine). Do not use
``course_lib`` (its ``features`` module holds the reference answers the grader compares yours
with): a file that imports it scores zero. The grader runs this file in a separate process with a
time limit, and a function that modifies its input tensors in place scores zero on that check.

Grade your work from a notebook cell with::

    from course_lib.grading import grade
    grade("../exercises", only="ex03")

or from the repository root with ``python -m course_lib.grading exercises --only ex03``.

Notation: a feature map ``A`` is ``[B, C, H, W]`` (a batch of ``B`` examples, ``C`` channels,
``H x W`` positions); ``A_c`` is channel ``c`` of one example, an ``H x W`` array. The student's
maps have ``C_s`` channels, the teacher's ``C_t``; ``C_s`` and ``C_t`` usually differ. An
embedding is ``[B, D]`` (one row per example; flatten a feature map with ``x.flatten(1)``).
"""
import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)


def attention_map(features: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Activation-based spatial attention map (Zagoruyko & Komodakis 2017, arXiv:1612.03928).

    Per example: sum the ``p``-th powers of the *absolute* activations over the channels, flatten
    the ``H x W`` positions (row-major: position ``h * W + w``) and divide by the L2 norm:

        Q = sum_c |A_c|^p            (an H x W map per example; note the absolute value)
        q = vec(Q) / ||vec(Q)||_2    (a unit vector of length H*W per example)

    The absolute value matters whenever activations can be negative (a convolution's output before
    its ReLU) and ``p`` is odd: ``A**p`` is not ``|A|**p``. The authors' code uses the mean over
    the channels of ``A_c^2`` instead of the sum: with ``p = 2`` that only divides ``Q`` by ``C``,
    which the normalisation removes, so both give the same ``q``. Because of the normalisation,
    ``q`` does not change when the features are multiplied by a non-zero constant, and student and
    teacher maps can be compared even though their channel counts differ.

    Args:
        features: ``[B, C, H, W]`` activations (any sign).
        p: the exponent, ``p > 0`` (the paper uses ``p = 2``).

    Returns:
        Tensor ``[B, H*W]`` whose rows have unit L2 norm (the input is left unchanged).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement attention_map()")


def hint_loss_with_adapter(student_features: torch.Tensor, teacher_features: torch.Tensor,
                           adapter_weight: torch.Tensor) -> torch.Tensor:
    """FitNets' hint loss through an adapter on the student side (Romero et al. 2015, arXiv:1412.6550).

    The student's map has ``C_s`` channels and the teacher's ``C_t``; to compare them, FitNets puts
    a regressor (here a 1x1 convolution without bias, given as its weight matrix ``W`` of shape
    ``[C_t, C_s]``) on the *student*, mapping its channels to the teacher's at every position:

        r[b, t, h, w] = sum_s W[t, s] * A_s[b, s, h, w]          (r: [B, C_t, H, W])

    and the loss is the mean squared error against the teacher's map ``u``, averaged over all
    ``B * C_t * H * W`` entries:

        L = mean_{b, t, h, w} (r[b, t, h, w] - u[b, t, h, w])^2

    The adapter is trained together with the student, so the loss must be differentiable with
    respect to ``adapter_weight`` (and the student's features). The source article of this course
    did it the other way round: its adapter mapped the *teacher's* channels to the student's, and
    its parameters were never given to the optimizer, so they stayed random. Here the teacher's
    map is the fixed target and only the student's side is transformed.

    Args:
        student_features: ``[B, C_s, H, W]``, the student's map ``A_s``.
        teacher_features: ``[B, C_t, H, W]``, the teacher's map ``u`` (same ``B``, ``H``, ``W``).
        adapter_weight: ``[C_t, C_s]``, the 1x1 convolution's weight ``W`` (teacher channels first,
            as in ``nn.Conv2d(C_s, C_t, 1).weight[:, :, 0, 0]``).

    Returns:
        A scalar (0-dim) tensor, differentiable with respect to ``adapter_weight`` and
        ``student_features``; zero when ``teacher_features`` equals the adapted student map.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement hint_loss_with_adapter()")


def rkd_distance_loss(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    """Relational KD, the distance term RKD-D (Park, Kim, Lu & Cho 2019, arXiv:1904.05068).

    Instead of matching the embeddings themselves, match how far apart the examples of the batch
    are. For each model, with ``e_i`` the embedding of example ``i``:

        d_ij = ||e_i - e_j||_2                                     (a [B, B] matrix, 0 on the diagonal)
        mu   = mean of d_ij over the B * (B - 1) pairs with i != j
        psi_ij = d_ij / mu

    and the loss is the Huber (smooth L1, ``delta = 1``) difference between the student's and the
    teacher's ``psi``, averaged over all ``B * B`` entries ``(i, j)`` (the diagonal included: its
    terms are 0; this is how the authors' code averages):

        huber(x) = 0.5 * x^2 if |x| < 1, else |x| - 0.5
        L = (1 / B^2) * sum_{i, j} huber(psi_s[i, j] - psi_t[i, j])

    Dividing by ``mu`` makes the loss independent of each embedding's scale, so the student (with
    its own embedding size ``D_s``) only has to reproduce the *relative* distances of the teacher's
    embeddings (size ``D_t``).

    Args:
        student_embeddings: ``[B, D_s]``, ``B >= 2`` distinct rows.
        teacher_embeddings: ``[B, D_t]`` (``D_t`` may differ from ``D_s``).

    Returns:
        A scalar (0-dim) tensor, differentiable with respect to ``student_embeddings``, with a
        finite gradient: ``d_ii = 0`` and the derivative of ``sqrt`` at 0 is infinite, so do not
        take ``sqrt`` of squared distances (``torch.linalg.vector_norm`` and ``torch.cdist`` give
        0 there).
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement rkd_distance_loss()")
