"""Feature distillation: FitNets hints, attention transfer and relational KD (notebook 03).

Each loss is a plain function of tensors, and an ``extra_loss`` factory for ``engine.fit``, which
adds its per-model values to the objective and optimises its parameters (the FitNets regressors)
together with the students'. The factories read the students' features with ``FeatureCapture``
hooks (removed when a group is done) and the teacher's from tables cached once by
``cache_features`` (the inputs are not augmented), rows picked with ``step.idx``::

    tables = cache_features(teacher, train, ["features.7"])          # {path: [n, 64, 7, 7]}
    runs = fit(StudentCNN, specs, train, config, teacher_logits=logits,
               extra_loss=hint_objective({"conv2": tables["features.7"]}))

Shapes: a loss takes ``[B, ...]`` (one model: a scalar) or ``[N, B, ...]`` (N models: ``[N]``).
In a stack of N StudentCNN a conv output is ``[B, N*C, H, W]`` (one model: N = 1).
Pairs for StudentCNN and TeacherCNN (``TEACHER_CNN_PAIRS``): conv1 (16 x 14 x 14, before its ReLU)
with features.3 (32 x 14 x 14), conv2 (32 x 7 x 7) with features.7 (64 x 7 x 7). Table memory:
see ``cache_features``.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .hooks import FeatureCapture, cache_features, resize  # noqa: F401 (cache_features: re-exported)
from .modes import eval_mode
from .stacking import GroupedConv2d, split_models
from .validation import check_choice, check_tensor, check_weight

TEACHER_CNN_PAIRS = {"conv1": "features.3", "conv2": "features.7"}
NORMALIZATIONS = (None, "l2", "standardize")
AT_FORMS = ("paper", "code")


def _check_choice(value, choices: tuple, name: str) -> None:
    check_choice(name, value, choices)


def _check_same_batch(s: torch.Tensor, t: torch.Tensor, dims: int, what: str, validate: bool = True) -> None:
    """Types and shapes always; non-empty and finite (reads values) with ``validate``."""
    for name, x in (("student", s), ("teacher", t)):
        if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < dims:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{what}: the {name} must be a float tensor with at least {dims} dims, got {got}")
    if s.shape[:-dims + 1] != t.shape[:-dims + 1]:
        raise ValueError(f"{what}: student {tuple(s.shape)} and teacher {tuple(t.shape)} differ in their "
                         f"leading (models, batch) dims")
    if validate:
        check_tensor(f"{what}: student", s)
        check_tensor(f"{what}: teacher", t)


# ---- FitNets: hints through a regressor on the student side (Romero et al. 2015) ----------------

def hint_loss(student: torch.Tensor, teacher: torch.Tensor, *, normalize: str | None = "l2",
              validate: bool = True) -> torch.Tensor:
    """FitNets' hint term between regressed student features r and teacher features u.

    ``student [..., B, C, Hs, Ws]`` (already mapped to the teacher's C channels, and resized here to
    the teacher's H, W), ``teacher [..., B, C, H, W]``. Per sample, over its D = C*H*W values:
    ``None``: mean((r - u)^2), FitNets' 1/2 ||u - r||^2 scaled by 2/D; ``"l2"`` (the default, not
    FitNets' loss): ||r/||r|| - u/||u|| ||^2 = 2 (1 - cos(r, u)), blind to the features' scale;
    ``"standardize"``: mean((z(r) - z(u))^2) with z = (x - mean) / std (no BatchNorm)
    = 2 (1 - Pearson correlation). Mean over B. ``validate=False`` skips the checks that read values
    (empty, NaN), for training loops.
    """
    _check_choice(normalize, NORMALIZATIONS, "normalize")
    _check_same_batch(student, teacher, 4, "hint_loss", validate)
    if student.shape[-3] != teacher.shape[-3]:
        raise ValueError(f"hint_loss: student has {student.shape[-3]} channels, teacher {teacher.shape[-3]}; "
                         "map the student to the teacher's channels first (HintLoss's regressor)")
    r, u = resize(student, teacher.shape[-2:]).flatten(-3), teacher.flatten(-3)
    if normalize == "l2":
        return (F.normalize(r, dim=-1) - F.normalize(u, dim=-1)).pow(2).sum(-1).mean(-1)
    if normalize == "standardize":
        r, u = [(x - x.mean(-1, keepdim=True)) / x.std(-1, correction=0, keepdim=True).clamp_min(1e-8) for x in (r, u)]
    return (r - u).pow(2).mean(-1).mean(-1)


class _FeatureTerm(nn.Module):
    """What the engine terms share: hooks on the students, the teacher's tables as buffers, close()."""

    def __init__(self, ctx, tables: dict):
        super().__init__()
        self.n, self.paths = ctx.n_models, list(tables)
        for i, t in enumerate(tables.values()):
            self.register_buffer(f"table{i}", t, persistent=False)   # moved by .to(device), never saved
        self.capture = FeatureCapture(ctx.module, self.paths)

    def pairs(self, step):
        """Per path: the students' features ``[B, N*C, H, W]``, the teacher's rows ``[N, B, ...]``."""
        for i, path in enumerate(self.paths):
            feats = self.capture.features[path]
            yield feats, getattr(self, f"table{i}")[step.idx].to(feats.dtype)

    def close(self) -> None:
        self.capture.close()


class HintLoss(_FeatureTerm):
    """FitNets hints for the N students of a training group: ``weight * sum_layers hint_loss``.

    A regressor per student and layer: a k x k convolution from the student's channels to the
    teacher's (k=1 by default; FitNets used convolutions), on the student side, optimised with it by
    ``fit``. The N regressors are one grouped convolution (``GroupedConv2d``): each student has its
    own and gets only its own gradient; each is initialised from its run's seed, so a stack trains as
    its runs one by one. ``self.regressors[j].unstack()`` gives them as ``nn.Conv2d``. The student
    module at each path must have a ``weight`` whose first dim counts its output channels (a conv).
    Trained in one stage, added to the rest of the objective (e.g. KD) from the first step; FitNets
    first trains the student's lower layers and the regressor on the hints alone, then the student with KD.
    """

    def __init__(self, ctx, teacher_features: dict, *, weight: float = 1.0, kernel_size: int = 1,
                 normalize: str | None = "l2"):
        super().__init__(ctx, teacher_features)
        self.weight, self.normalize = weight, normalize
        self.regressors = nn.ModuleList()
        for path, table in teacher_features.items():
            c_student = ctx.module.get_submodule(path).weight.shape[0] // ctx.n_models
            convs = []
            for spec in ctx.specs:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(spec.seed + 7919)
                    convs.append(nn.Conv2d(c_student, table.shape[1], kernel_size, padding=kernel_size // 2))
            self.regressors.append(GroupedConv2d(convs))

    def forward(self, step):
        terms = [hint_loss(split_models(regressor(s), self.n), t, normalize=self.normalize, validate=False)
                 for regressor, (s, t) in zip(self.regressors, self.pairs(step))]
        return self.weight * torch.stack(terms).sum(0)


def _check_tables(tables) -> None:
    if not isinstance(tables, dict) or not tables:
        raise ValueError("teacher_features must be a non-empty dict {student path: [n_train, C, H, W] table}")
    for path, t in tables.items():
        if not torch.is_tensor(t) or t.dim() != 4 or not t.is_floating_point():
            got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise ValueError(f"teacher table for {path!r}: expected a float [n_train, C, H, W] tensor, got {got}")
        check_tensor(f"teacher table for {path!r}", t)
    rows = {t.shape[0] for t in tables.values()}
    if len(rows) > 1:
        raise ValueError(f"teacher tables with different row counts {sorted(rows)}: one row per training image")


def hint_objective(teacher_features: dict, *, weight: float = 1.0, kernel_size: int = 1,
                   normalize: str | None = "l2"):
    """``extra_loss`` factory for ``fit``: FitNets hints (``HintLoss``) from cached teacher tables.

    ``teacher_features`` maps a *student* module path to the teacher's table for it, in training-set
    order: ``{"conv2": cache_features(teacher, train, ["features.7"])["features.7"]}``.
    """
    _check_tables(teacher_features)
    _check_choice(normalize, NORMALIZATIONS, "normalize")
    check_weight("weight", weight, allow_tensor=False)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 1 (the regressor keeps the spatial size), "
                         f"got {kernel_size!r}")
    return partial(HintLoss, teacher_features=teacher_features, weight=weight, kernel_size=kernel_size,
                   normalize=normalize)


class ArticleFeatureLoss(nn.Module):
    """The source article's feature loss, kept to show its mistake: use ``HintLoss`` instead.

    Its adapters live in the loss and map *teacher* channels to the student's; its training loop
    optimises ``student.parameters()`` only, so the adapters are never updated and stay random.
    (Even trained, a teacher-side adapter can shrink towards zero with the student's features;
    FitNets regresses the student onto a fixed teacher target.)
    """

    def __init__(self, student_channels: list[int], teacher_channels: list[int]):
        super().__init__()
        self.adapters = nn.ModuleList(nn.Conv2d(t, s, 1) for s, t in zip(student_channels, teacher_channels))

    def forward(self, student_feats: list, teacher_feats: list) -> torch.Tensor:
        return torch.stack([F.mse_loss(s, a(t)) for s, t, a in zip(student_feats, teacher_feats, self.adapters)]).sum()


# ---- Attention transfer (Zagoruyko & Komodakis 2017) ---------------------------------------------

def attention_map(features: torch.Tensor, p: float = 2, *, size=None, validate: bool = True) -> torch.Tensor:
    """Activation-based attention, ``[..., C, H, W]`` -> ``[..., H*W]``: vec(sum_c |A_c|^p), L2-normalised.

    The authors' code takes mean_c A_c^2: with p = 2 it differs by the factor 1/C, which the
    normalisation removes. ``size``: resize the map to (h, w) before normalising. ``validate=False``
    skips the checks that read values (empty, NaN), for training loops.
    """
    check_weight("p", p, low_open=True, allow_tensor=False, meaning="the exponent of |A_c|^p")
    check_tensor("features", features, min_dims=3, layout="[..., C, H, W]", allow_empty=True, finite=False)
    if validate:
        check_tensor("features", features)
    q = features.abs().pow(p).sum(-3)
    return F.normalize((q if size is None else resize(q, size)).flatten(-2), dim=-1)


@torch.no_grad()
def attention_agreement(student: nn.Module, teacher: nn.Module, x: torch.Tensor, pairs: dict[str, str], *,
                        p: float = 2, batch_size: int = 500) -> torch.Tensor:
    """Per image, the mean over the layer ``pairs`` (student path -> teacher path) of the cosine
    similarity of the two attention maps (:func:`attention_map`, unit vectors): 1 where the student
    looks where the teacher does. What attention transfer optimises, measured on any images ``x``.
    Returns ``[len(x)]``; both models run in eval mode (restored after)."""
    if not pairs:
        raise ValueError("attention_agreement needs at least one (student path, teacher path) pair")
    out = []
    with eval_mode(student, teacher):
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            with FeatureCapture(student, list(pairs)) as s_cap, FeatureCapture(teacher, list(pairs.values())) as t_cap:
                student(xb)
                teacher(xb)
                cos = []
                for s_path, t_path in pairs.items():
                    fs, ft = s_cap.features[s_path], t_cap.features[t_path]
                    if fs.shape[-2:] != ft.shape[-2:]:
                        raise ValueError(f"{s_path} {tuple(fs.shape[-2:])} and {t_path} {tuple(ft.shape[-2:])}: "
                                         "attention maps must have the same spatial size")
                    cos.append((attention_map(fs, p, validate=False) * attention_map(ft, p, validate=False)).sum(-1))
                out.append(torch.stack(cos).mean(0))
    return torch.cat(out)


def _at_term(q_s: torch.Tensor, q_t: torch.Tensor, form: str) -> torch.Tensor:
    """One layer's term from unit maps ``[..., B, HW]``: mean_b of the (squared for "code") distance / HW."""
    diff = q_s - q_t
    d = diff.pow(2).sum(-1) if form == "code" else torch.linalg.vector_norm(diff, dim=-1)
    return d.mean(-1) / q_s.shape[-1]


def attention_transfer_loss(student_feats: list, teacher_feats: list, *, p: float = 2, form: str = "code",
                            beta: float = 1000.0, validate: bool = True) -> torch.Tensor:
    """Attention transfer summed over layer pairs j; q = ``attention_map`` (student resized to teacher).

    ``form="paper"`` (eq. 2; beta "divided by the number of elements in the attention map and batch
    size", sec. 4.1): beta/2 * sum_j mean_b ||q_s - q_t||_2 / (H_j W_j).
    ``form="code"`` (``at_loss`` of github.com/szagoruyko/attention-transfer, cifar.py):
    beta/2 * sum_j mean_{b,i} (q_s - q_t)_i^2, i.e. the same with the distance squared.
    beta = 1e3 as in the authors' runs (``--beta 1e+3``). Their cifar.py multiplies the sum of the
    ``at_loss`` terms by beta, not beta/2 (the paper's eq. 2 writes beta/2): at the same beta,
    ``form="code"`` weighs half as much as the authors' code. Features ``[..., B, C, H, W]`` per
    layer; channels may differ. ``validate=False`` skips the checks that read values (empty, NaN).
    """
    _check_choice(form, AT_FORMS, "form")
    check_weight("beta", beta, allow_tensor=False, meaning="the weight of the attention term")
    if not isinstance(student_feats, (list, tuple)) or not isinstance(teacher_feats, (list, tuple)):
        raise TypeError("attention_transfer_loss takes lists of feature maps, one per layer")
    if not student_feats or len(student_feats) != len(teacher_feats):
        raise ValueError(f"need matching non-empty lists, got {len(student_feats)} student and "
                         f"{len(teacher_feats)} teacher layers")
    terms = []
    for s, t in zip(student_feats, teacher_feats):
        _check_same_batch(s, t, 4, "attention_transfer_loss", validate)
        terms.append(_at_term(attention_map(s, p, size=t.shape[-2:], validate=False),
                              attention_map(t, p, validate=False), form))
    return beta / 2 * torch.stack(terms).sum(0)     # stacked: on the features' device and dtype


class AttentionTransfer(_FeatureTerm):
    """Attention transfer for the students of a training group, from precomputed teacher maps."""

    def __init__(self, ctx, teacher_maps: dict, *, p: float = 2, form: str = "code", beta: float = 1000.0):
        super().__init__(ctx, teacher_maps)
        self.p, self.form, self.beta = p, form, beta

    def forward(self, step):
        terms = [_at_term(attention_map(split_models(s, self.n), self.p, size=q_t.shape[-2:], validate=False),
                          q_t.flatten(-2),
                          self.form) for s, q_t in self.pairs(step)]
        return self.beta / 2 * torch.stack(terms).sum(0)


def attention_objective(teacher_features: dict, *, p: float = 2, form: str = "code", beta: float = 1000.0):
    """``extra_loss`` factory: attention transfer, ``{student path: teacher table [n, C, H, W]}``.

    The teacher's normalised maps are computed once here (``[n, H, W]``, far smaller than the tables).
    """
    _check_tables(teacher_features)
    _check_choice(form, AT_FORMS, "form")
    check_weight("p", p, low_open=True, allow_tensor=False, meaning="the exponent of |A_c|^p")
    check_weight("beta", beta, allow_tensor=False, meaning="the weight of the attention term")
    maps = {path: torch.cat([attention_map(c.float(), p, validate=False) for c in t.split(4096)])
            .unflatten(-1, t.shape[-2:]) for path, t in teacher_features.items()}
    return partial(AttentionTransfer, teacher_maps=maps, p=p, form=form, beta=beta)


# ---- Relational KD (Park et al. 2019): distances and angles between the samples of a batch -----

def _check_embeddings(s: torch.Tensor, t: torch.Tensor, what: str, validate: bool = True) -> None:
    _check_same_batch(s, t, 2, what, validate)
    if s.dim() > 3 or s.shape[-2] < 2:
        raise ValueError(f"{what}: student and teacher must be [B, D] or [N, B, D] embeddings with B >= 2 "
                         f"(flatten feature maps first), got student {tuple(s.shape)}")


def _distances(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[..., B, B]`` (exact zeros on the diagonal: no matrix-product shortcut)."""
    return torch.cdist(e, e, compute_mode="donot_use_mm_for_euclid_dist")


def _angles(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at e_a between e_b and e_c, ``[..., a, b, c]``; 0 where b or c equals a.

    From the Gram matrix g: <e_b - e_a, e_c - e_a> = g_bc - g_ab - g_ac + g_aa (no [B, B, D] tensor).
    """
    e = e - e.mean(-2, keepdim=True)             # angles do not change; smaller numbers, less rounding
    g = e @ e.transpose(-1, -2)
    dot = g[..., None, :, :] - g[..., :, :, None] - g[..., :, None, :] + g.diagonal(dim1=-2, dim2=-1)[..., None, None]
    d = _distances(e)
    norms = d[..., :, :, None] * d[..., :, None, :]
    return torch.where(norms > 0, dot / norms.clamp_min(1e-12), torch.zeros_like(dot))


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """RKD-D: Huber(psi(s_i, s_j), psi(t_i, t_j)) averaged over all B^2 pairs (as the authors' code).

    psi = ||e_i - e_j||_2 / mu, mu = the batch's mean non-zero distance; Huber = smooth L1 (delta 1).
    ``validate=False`` skips the checks that read values (NaN), for training loops.
    """
    _check_embeddings(student, teacher, "rkd_distance_loss", validate)

    def psi(e):
        d = _distances(e)
        mu = d.sum((-1, -2)) / (d > 0).sum((-1, -2)).clamp_min(1)
        return d / mu.clamp_min(1e-12)[..., None, None]
    return F.smooth_l1_loss(psi(student), psi(teacher).detach(), reduction="none").mean((-1, -2))


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """RKD-A: Huber(cos angle(s_i, s_j, s_k), cos angle(t_i, t_j, t_k)) over all B^3 triplets (B^3 memory)."""
    _check_embeddings(student, teacher, "rkd_angle_loss", validate)
    return F.smooth_l1_loss(_angles(student), _angles(teacher).detach(), reduction="none").mean((-1, -2, -3))


def rkd_loss(student: torch.Tensor, teacher: torch.Tensor, *, distance_weight: float = 25.0,
             angle_weight: float = 50.0, validate: bool = True) -> torch.Tensor:
    """Relational KD: ``distance_weight * RKD-D + angle_weight * RKD-A`` (RepDistiller's defaults, 25 and 50).

    A zero weight skips its term (the angle term costs O(B^3) per model and step)."""
    check_weight("distance_weight", distance_weight, allow_tensor=False)
    check_weight("angle_weight", angle_weight, allow_tensor=False)
    loss = distance_weight * rkd_distance_loss(student, teacher, validate=validate)
    return loss + angle_weight * rkd_angle_loss(student, teacher, validate=validate) if angle_weight else loss


class RelationalKD(nn.Module):
    """RKD for the students of a group: their logits (or a conv output, flattened) vs teacher rows."""

    def __init__(self, ctx, teacher_embeddings: torch.Tensor, *, student_path: str | None = None, **weights):
        super().__init__()
        self.n, self.path, self.weights = ctx.n_models, student_path, weights
        self.register_buffer("table", teacher_embeddings, persistent=False)
        self.capture = FeatureCapture(ctx.module, [student_path]) if student_path else None

    def forward(self, step):
        s = step.logits if self.capture is None else split_models(self.capture.features[self.path], self.n).flatten(2)
        return rkd_loss(s, self.table[step.idx].to(s.dtype), **self.weights, validate=False)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.close()


def rkd_objective(teacher_embeddings: torch.Tensor, *, student_path: str | None = None,
                  distance_weight: float = 25.0, angle_weight: float = 50.0):
    """``extra_loss`` factory: RKD against ``teacher_embeddings [n_train, ...]`` (flattened to [n, D]).

    ``student_path=None``: the students' logits (e.g. with ``cache_logits(teacher, train)``);
    else the output of that student convolution, flattened.
    """
    if not torch.is_tensor(teacher_embeddings) or teacher_embeddings.dim() < 2:
        raise ValueError("teacher_embeddings must be a [n_train, D] (or [n_train, C, H, W]) tensor")
    check_tensor("teacher_embeddings", teacher_embeddings)
    check_weight("distance_weight", distance_weight, allow_tensor=False)
    check_weight("angle_weight", angle_weight, allow_tensor=False)
    return partial(RelationalKD, teacher_embeddings=teacher_embeddings.flatten(1).float(), student_path=student_path,
                   distance_weight=distance_weight, angle_weight=angle_weight)
