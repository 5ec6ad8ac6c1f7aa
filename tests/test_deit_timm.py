"""Cross-check of ``course_lib.deit.DeiT`` against timm's ``VisionTransformerDistilled``.

Our weights are copied into timm's model (the parameter names differ in three places only, see
``to_timm_state_dict``); then both must agree on the token layout, on both heads' logits in
distilled training, on the averaged prediction in evaluation, and on the effect of the distillation
token. timm is a dev dependency (constraints/ci.txt); the model is built with ``pretrained=False``,
so nothing is downloaded.

Tolerance: timm's LayerNorms use eps 1e-6, ours the PyTorch default 1e-5. The tests set ours to 1e-6
(``match_eps``) so that both compute the same function; what remains is float32 rounding (timm's
attention runs through ``F.scaled_dot_product_attention``, ours is written out): measured at most
4e-6 on logits of size ~4, so ``atol=rtol=1e-5`` leaves a margin of about 10x and still catches any
real difference. With the eps left unmatched the logits differ by 1e-4 to 4e-4 here (more than an
atol of 1e-4 would accept; ``test_eps_is_the_only_difference``).
"""
import re

import pytest
import timm   # a dev dependency (pyproject.toml, pinned in constraints/ci.txt)
import torch
from torch import nn

from course_lib.deit import DeiT
from course_lib.engine import prediction

TOL = dict(atol=1e-5, rtol=1e-5)
# (in_channels, image_size, patch_size): Fashion-MNIST's 7x7 patches and the CIFAR-sized check
CONFIGS = [(1, 28, 7), (3, 32, 4)]


def to_timm_state_dict(model: DeiT) -> dict[str, torch.Tensor]:
    """Our ``DeiT.state_dict()`` under timm's ``VisionTransformerDistilled`` parameter names.

    Three renames: our patch embedding is the Conv2d itself (timm: ``patch_embed.proj``) and our MLP
    is a Sequential (``mlp.0``/``mlp.2``; timm: ``mlp.fc1``/``mlp.fc2``). Everything else is named
    alike: cls_token, dist_token, pos_embed, blocks.i.{norm1, attn.qkv, attn.proj, norm2}, norm,
    head, head_dist.
    """
    def rename(name: str) -> str:
        name = re.sub(r"^patch_embed\.", "patch_embed.proj.", name)
        return name.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2.")
    return {rename(name): tensor for name, tensor in model.state_dict().items()}


def build_pair(in_channels, image_size, patch_size, *, match_eps=True):
    """Our DeiT with random (not default) weights everywhere, and timm's with those weights loaded."""
    torch.manual_seed(0)
    ours = DeiT(in_channels, 10, image_size, patch_size=patch_size, dim=64, depth=2, heads=4, mlp_ratio=2)
    with torch.no_grad():   # perturb every parameter, LayerNorm weights included, so a mis-mapped one shows
        for p in ours.parameters():
            p.add_(0.2 * torch.randn_like(p))
    if match_eps:
        for m in ours.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = 1e-6
    theirs = timm.create_model(
        "deit_tiny_distilled_patch16_224", pretrained=False, img_size=image_size, patch_size=patch_size,
        in_chans=in_channels, num_classes=10, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2, qkv_bias=False)
    theirs.load_state_dict(to_timm_state_dict(ours))   # strict: every name and shape must match
    return ours, theirs


def images(in_channels, image_size, n=4):
    return torch.randn(n, in_channels, image_size, image_size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("config", CONFIGS)
def test_same_token_layout(config):
    in_channels, image_size, patch_size = config
    ours, theirs = build_pair(*config)
    assert isinstance(theirs, timm.models.deit.VisionTransformerDistilled)
    assert theirs.num_prefix_tokens == 2                     # [class, distillation, patches...]
    assert theirs.pos_embed.shape == ours.pos_embed.shape == (1, 2 + (image_size // patch_size) ** 2, 64)
    x = images(in_channels, image_size)
    with torch.no_grad():
        assert theirs.forward_features(x).shape == ours.norm(ours.blocks(ours.embed(x))).shape


@pytest.mark.parametrize("config", CONFIGS)
def test_both_heads_match_in_distilled_training(config):
    ours, theirs = build_pair(*config)
    ours.train(), theirs.train()
    theirs.set_distilled_training(True)
    x = images(*config[:2])
    with torch.no_grad():
        (cls_ours, dist_ours), (cls_timm, dist_timm) = ours(x), theirs(x)
        # every token too, not only the two the heads read
        torch.testing.assert_close(theirs.forward_features(x), ours.norm(ours.blocks(ours.embed(x))), **TOL)
    torch.testing.assert_close(cls_timm, cls_ours, **TOL)
    torch.testing.assert_close(dist_timm, dist_ours, **TOL)
    assert not torch.allclose(cls_ours, dist_ours, atol=1e-2)   # two different heads, not one read twice


@pytest.mark.parametrize("config", CONFIGS)
def test_eval_prediction_is_the_mean_of_the_heads(config):
    ours, theirs = build_pair(*config)
    ours.eval(), theirs.eval()
    theirs.set_distilled_training(True)     # ignored outside training: timm averages the heads
    x = images(*config[:2])
    with torch.no_grad():
        out_ours, out_timm = ours(x), theirs(x)
    assert torch.is_tensor(out_timm) and out_timm.shape == (len(x), 10)
    torch.testing.assert_close(out_timm, prediction(out_ours), **TOL)
    torch.testing.assert_close(out_timm, (out_ours[0] + out_ours[1]) / 2, **TOL)


@pytest.mark.parametrize("config", CONFIGS)
def test_distillation_token_moves_both_heads_alike(config):
    ours, theirs = build_pair(*config)
    ours.train(), theirs.train()
    theirs.set_distilled_training(True)
    x = images(*config[:2])
    with torch.no_grad():
        before = ours(x)
        ours.dist_token.add_(torch.randn(ours.dist_token.shape, generator=torch.Generator().manual_seed(3)))
        theirs.load_state_dict(to_timm_state_dict(ours))
        after_ours, after_timm = ours(x), theirs(x)
    for b, a_ours, a_timm in zip(before, after_ours, after_timm):
        assert (a_ours - b).abs().max() > 1e-2               # both heads move (class token attends to it)
        torch.testing.assert_close(a_timm, a_ours, **TOL)     # and timm's move the same way
        torch.testing.assert_close(a_timm - b, a_ours - b, **TOL)


def test_eps_is_the_only_difference():
    """Unmatched eps (ours 1e-5, timm 1e-6): close but not equal - the gap the eps fix removes."""
    ours, theirs = build_pair(1, 28, 7, match_eps=False)
    ours.train(), theirs.train()
    theirs.set_distilled_training(True)
    x = images(1, 28)
    with torch.no_grad():
        gap = max((a - b).abs().max().item() for a, b in zip(ours(x), theirs(x)))
    assert 1e-6 < gap < 1e-3
