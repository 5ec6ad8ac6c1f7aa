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

The ladder (notebook 03's exercise cell gives points and times): ``attention_map`` (warm-up),
``hint_loss_with_adapter`` and ``choose_embedding_loss`` (core: the second is a choice with a
reason), ``rkd_distance_loss`` (stretch). The docstrings give each function's contract, not its
formula; the grader names the common mistakes after a wrong answer.
"""
import torch
import torch.nn.functional as F  # noqa: F401 (for your answers: the stubs in exercises/ do not use it yet)


def attention_map(features: torch.Tensor, p: float = 2) -> torch.Tensor:
    """Activation-based spatial attention map (Zagoruyko & Komodakis 2017, arXiv:1612.03928): the
    normalised map ``Q_hat`` of notebook 03's section "The idea: supervise the middle of the network",
    for one exponent ``p``, flattened.

    Contract: one map per example, one entry per spatial position, positions flattened row-major
    (position ``h * W + w``); the channels are collapsed as the notebook defines it, whatever
    their number.

    What must hold (the grader checks these and the values):

    - every row has unit L2 norm;
    - the map does not change when the features are multiplied by any non-zero constant (``0.01``,
      ``7``, ``-3``), for every ``p`` (odd ones included) and features of both signs (a
      convolution's output before its ReLU);
    - ``p`` defaults to 2; ``C = 1`` and ``H != W`` are allowed.

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
    """FitNets' hint loss through its regressor (Romero et al. 2015, arXiv:1412.6550), the regressor as
    notebook 03's section "One optimisation step, done right and done as in the article"
    places it.

    Contract: the regressor is a 1x1 convolution without bias whose weight ``W`` is given as a
    ``[C_t, C_s]`` matrix; it is applied where the notebook says it belongs, and the loss is the
    mean squared error between the two maps it then makes comparable, averaged over every entry
    (no 1/2 factor, no normalisation of the maps).

    What must hold (the grader checks these and the values):

    - with ``C_s = C_t`` and ``W`` the identity, it is the plain mean squared error between the maps;
    - it is 0 when the teacher's map is exactly what the regressor makes of the student's;
    - ``C_s`` and ``C_t`` differ in general (``3`` and ``8``, ``10`` and ``4``, ...);
    - the regressor is trained with the student: the loss has the gradient of the definition above
      with respect to ``adapter_weight`` and to ``student_features``.

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
    """Relational KD, the distance term RKD-D (Park, Kim, Lu & Cho 2019, arXiv:1904.05068), as notebook
    03's section "The idea" describes it: match the geometry of the batch, not the embeddings.

    Contract: for each model, the ``[B, B]`` matrix of Euclidean distances between the batch's
    examples, divided by that model's mean distance over the ``B * (B - 1)`` pairs ``i != j``; the
    loss compares the two normalised matrices entry by entry with the Huber loss (smooth L1,
    ``delta = 1``: quadratic below 1, linear above) and averages over all ``B * B`` entries, the
    diagonal included (its terms are 0; this is how the authors' code averages).

    What must hold (the grader checks these and the values):

    - 0 for identical embeddings, and for a teacher that is a scaled, rotated and shifted copy of
      the student;
    - unchanged when either side's embeddings are multiplied by a positive constant (``0.01``, ``100``);
    - ``B = 2`` works; the differences may exceed 1 (one example far from the others);
    - a finite gradient with respect to ``student_embeddings``, equal to that of the definition,
      although every ``d_ii`` is 0.

    Args:
        student_embeddings: ``[B, D_s]``, ``B >= 2`` distinct rows.
        teacher_embeddings: ``[B, D_t]`` (``D_t`` may differ from ``D_s``).

    Returns:
        A scalar (0-dim) tensor, differentiable with respect to ``student_embeddings``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement rkd_distance_loss()")


def choose_embedding_loss() -> str:
    """A choice with a reason: which of notebook 03's losses distils a teacher's embeddings here?

    A teacher's penultimate embeddings are ``[B, 512]`` vectors whose norms are about 30; the
    student's are ``[B, 64]``, norms about 2. You want the student to learn what the teacher's
    embeddings know, with no extra parameter to train and without pulling the student's
    embeddings to the teacher's scale. Which loss, applied to the two embeddings as they are?

    - ``"hint_mse"``: FitNets' hint, the plain squared error;
    - ``"hint_cosine"``: the hint with each vector normalised first (the notebook's ``2 (1 - cos)``);
    - ``"attention"``: attention transfer, each embedding's attention map compared;
    - ``"rkd_distance"``: relational KD's distance term.

    A wrong key gets a hint saying why it fails (keys can be guessed: 2 points).

    Returns:
        One of the four keys above, a ``str``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement choose_embedding_loss()")
