"""Zero-DCE / Zero-DCE++: layouts, loaders, forward behaviour; real weights when ../shared is present."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_image
from engan.eval.peers import (PEERS, PairLIE, PeerError, ZeroDCE, ZeroDCEPP, flush_subnormals, load_peer,
                              parse_peers, peer_enhance_fn)

# Tensor layouts from ../shared/peers/README.md.
ZERO_DCE_LAYOUT = {
    "e_conv1.weight": (32, 3, 3, 3), "e_conv2.weight": (32, 32, 3, 3), "e_conv3.weight": (32, 32, 3, 3),
    "e_conv4.weight": (32, 32, 3, 3), "e_conv5.weight": (32, 64, 3, 3), "e_conv6.weight": (32, 64, 3, 3),
    "e_conv7.weight": (24, 64, 3, 3),
}


def _save_random(tmp_path, name: str, seed: int = 0):
    torch.manual_seed(seed)
    net = PEERS[name].build()
    path = tmp_path / PEERS[name].weights
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return net, path


def test_zero_dce_layout_and_parameter_count():
    net = ZeroDCE()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    for k, s in ZERO_DCE_LAYOUT.items():
        assert shapes[k] == s
        assert shapes[k.replace("weight", "bias")] == (s[0],)
    assert len(shapes) == 14
    assert sum(p.numel() for p in net.parameters()) == 79_416


def test_zero_dce_pp_layout_and_parameter_count():
    sd = ZeroDCEPP().state_dict()
    assert len(sd) == 28
    assert tuple(sd["e_conv1.depth_conv.weight"].shape) == (3, 1, 3, 3)
    assert tuple(sd["e_conv5.depth_conv.weight"].shape) == (64, 1, 3, 3)
    assert tuple(sd["e_conv7.point_conv.weight"].shape) == (3, 64, 1, 1)
    assert sum(v.numel() for v in sd.values()) == 10_561


@pytest.mark.parametrize("net", [ZeroDCE(), ZeroDCEPP(), ZeroDCEPP(scale_factor=12)], ids=["dce", "dce++", "dce++x12"])
def test_forward_keeps_shape_and_range(net):
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        y = net.eval()(x)
        r = net.curves(x)
    assert y.shape == x.shape and r.shape[-2:] == x.shape[-2:]
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(r.abs().max()) <= 1.0


def test_zero_curves_leave_the_image_unchanged_and_negative_curves_brighten():
    """LE(x) = x + r (x^2 - x): r = 0 is the identity; r = -1 gives 2x - x^2 at each of 8 steps."""
    net = ZeroDCE().eval()
    with torch.no_grad():
        net.e_conv7.weight.zero_()
        net.e_conv7.bias.zero_()
        x = torch.rand(1, 3, 16, 16)
        assert torch.equal(net(x), x)
        net.e_conv7.bias.fill_(-1e4)  # tanh -> -1
        y = net(x)
    expected = x.clone()
    for _ in range(8):
        expected = 2 * expected - expected**2
    assert torch.allclose(y, expected, atol=1e-6)


def test_load_peer_round_trip_and_errors(tmp_path):
    ref, _ = _save_random(tmp_path, "zero-dce")
    loaded = load_peer("zero-dce", tmp_path)
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(FileNotFoundError, match=r"Zero-DCE\+\+ weights not found at .*zero_dce_pp/Epoch99.pth"):
        load_peer("zero-dce++", tmp_path)
    bad = tmp_path / "zero_dce_pp" / "Epoch99.pth"
    bad.parent.mkdir()
    torch.save({"e_conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(PeerError, match=r"does not hold Zero-DCE\+\+ weights"):
        load_peer("zero-dce++", tmp_path)


def test_subnormal_weights_are_flushed_to_zero_without_changing_the_output(tmp_path):
    # The released Zero-DCE weights hold thousands of subnormal floats, which make a CPU ~30x slower.
    ref, path = _save_random(tmp_path, "zero-dce", seed=1)
    state = ref.state_dict()
    tiny = torch.finfo(torch.float32).tiny
    for k in ("e_conv2.weight", "e_conv7.weight"):
        state[k].view(-1)[::4] = tiny / 8  # subnormal
    torch.save(state, path)
    ref.load_state_dict(state)
    loaded = load_peer("zero-dce", tmp_path)
    for k, v in loaded.state_dict().items():
        assert not ((v != 0) & (v.abs() < tiny)).any(), k
    assert int((loaded.e_conv2.weight == 0).sum()) == 32 * 32 * 9 // 4
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), ref(x))
    assert flush_subnormals(loaded) == 0


def test_parse_peers():
    assert parse_peers("zero-dce, Zero-DCE++") == ["zero-dce", "zero-dce++"]
    assert parse_peers("none") == [] and parse_peers("") == []
    with pytest.raises(PeerError, match="unknown peer.*sci.*known: zero-dce, zero-dce\\+\\+, pairlie, pairlie-lol"):
        parse_peers("sci")


def test_parse_peers_all_takes_the_peers_whose_weights_are_present(tmp_path):
    assert parse_peers("all", tmp_path) == []
    _save_random(tmp_path, "pairlie")
    assert parse_peers("all", tmp_path) == ["pairlie", "pairlie-lol"]  # one file, both exponents
    _save_random(tmp_path, "zero-dce")
    assert parse_peers("all", tmp_path) == ["zero-dce", "pairlie", "pairlie-lol"]
    assert parse_peers("all") == []


# Tensor layout of the released PairLIE.pth (../shared/peers/README.md).
def test_pairlie_layout_names_and_parameter_count():
    sd = PairLIE().state_dict()
    assert len(sd) == 30
    for net, cout in (("N", 3), ("L", 1), ("R", 3)):
        for i in (1, 4, 7, 10, 13):
            cin = 3 if i == 1 else 64
            out = cout if i == 13 else 64
            assert tuple(sd[f"{net}_net.{net}_net.{i}.weight"].shape) == (out, cin, 3, 3)
            assert tuple(sd[f"{net}_net.{net}_net.{i}.bias"].shape) == (out,)
    assert sum(v.numel() for v in sd.values()) == 341_767


def test_pairlie_output_is_illumination_to_the_exponent_times_reflectance():
    net = PairLIE(exponent=0.14).eval()
    x = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        clean = net.N_net(x)
        expected = net.L_net(clean) ** 0.14 * net.R_net(clean)
        y = net(x)
    assert torch.equal(y, expected)
    assert y.shape == x.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_the_two_pairlie_peers_share_the_weights_and_differ_in_the_exponent(tmp_path):
    _save_random(tmp_path, "pairlie", seed=4)
    default, lol = load_peer("pairlie", tmp_path), load_peer("pairlie-lol", tmp_path)
    assert (default.exponent, lol.exponent) == (0.2, 0.14)
    for k, v in default.state_dict().items():
        assert torch.equal(lol.state_dict()[k], v)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ld = default.L_net(default.N_net(x))
        # L in (0, 1): the smaller exponent lifts it more, so pairlie-lol is brighter wherever R > 0
        assert float((lol(x) - default(x)).mean()) > 0
        assert torch.allclose(lol(x), default(x) * ld ** (0.14 - 0.2), atol=1e-6)


def test_pairlie_refuses_a_wrong_file_naming_it(tmp_path):
    bad = tmp_path / "pairlie" / "PairLIE.pth"
    bad.parent.mkdir()
    torch.save(ZeroDCE().state_dict(), bad)
    with pytest.raises(PeerError, match=r"pairlie/PairLIE.pth does not hold PairLIE \(g 0.2\) weights"):
        load_peer("pairlie", tmp_path)
    bad.write_bytes(b"not a pickle at all")
    with pytest.raises(PeerError, match=r"pairlie/PairLIE.pth was refused as pairlie-lol weights.*use the released PairLIE.pth"):
        load_peer("pairlie-lol", tmp_path)


def test_peer_enhance_fn_returns_uint8_of_the_same_shape(tmp_path):
    _save_random(tmp_path, "zero-dce++", seed=3)
    fn = peer_enhance_fn(load_peer("zero-dce++", tmp_path))
    img = make_image(30, 42)
    out = fn(img)
    assert out.shape == img.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", ["zero-dce", "zero-dce++", "pairlie", "pairlie-lol"])
def test_real_weights_brighten_a_lol_image(shared_dir, name):
    from engan.eval.datasets import load_rgb
    from engan.eval.metrics import brightness
    from engan.eval.metrics import psnr_8bit as psnr

    peers = shared_dir / "peers"
    if not (peers / PEERS[name].weights).is_file():
        pytest.skip(f"{peers / PEERS[name].weights} not present")
    crop = (slice(120, 280), slice(180, 420))  # 160x240 centre: fast, still a real scene
    low = load_rgb(shared_dir / "data" / "lol_eval15" / "low" / "1.png")[crop]
    high = load_rgb(shared_dir / "data" / "lol_eval15" / "high" / "1.png")[crop]
    out = peer_enhance_fn(load_peer(name, peers))(low)
    assert brightness(out) > brightness(low) + 40
    assert psnr(high, out) > psnr(high, low) + 5
