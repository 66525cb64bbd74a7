"""Generator/discriminator structure and the I/O contract."""
import pytest
import torch

from engan.models import (PatchDiscriminator, count_parameters, create_generator,
                          crop_padding, enhance_tensor, pad_to_multiple)
from engan.models.checkpoint import CheckpointError, load_generator, read_metadata, save_generator


def test_paper_parameter_count_matches_authors():
    assert count_parameters(create_generator("paper")) == 8_636_675


def test_lite_is_half_width():
    assert count_parameters(create_generator("lite")) == 2_161_795


def test_discriminator_parameter_counts_and_maps():
    d_glob, d_loc = PatchDiscriminator(n_layers=5), PatchDiscriminator(n_layers=4)
    assert count_parameters(d_glob) == 11_154_369
    assert count_parameters(d_loc) == 6_959_553
    assert d_glob(torch.zeros(1, 3, 320, 320)).shape == (1, 1, 13, 13)
    assert d_loc(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 5, 5)


@pytest.mark.parametrize("hw", [(16, 16), (32, 48), (64, 32)])
def test_generator_shapes_and_range(hw):
    g = create_generator("tiny").eval()
    with torch.no_grad():
        y = g(torch.rand(2, 3, *hw))
    assert y.shape == (2, 3, *hw)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_generator_refuses_non_multiple_of_16():
    g = create_generator("tiny").eval()
    with pytest.raises(ValueError, match=r"17x33 .*multiples of 16.*pad_to_multiple"):
        g(torch.rand(1, 3, 17, 33))


@pytest.mark.parametrize("hw", [(17, 999), (1, 1), (15, 15), (33, 40)])
def test_enhance_tensor_any_size(hw):
    g = create_generator("tiny").eval()
    y = enhance_tensor(g, torch.rand(1, 3, *hw))
    assert y.shape == (1, 3, *hw)


def test_pad_is_centred_reflect_and_crop_inverts():
    x = torch.rand(1, 3, 17, 30)
    xp, pads = pad_to_multiple(x)
    assert xp.shape[-2:] == (32, 32)
    assert pads == (7, 8, 1, 1)
    assert torch.equal(crop_padding(xp, pads), x)


def test_checkpoint_roundtrip(tmp_path):
    g = create_generator("tiny").eval()
    p = save_generator(tmp_path / "g.safetensors", g, extra={"step": 7})
    meta = read_metadata(p)
    assert meta["engan.preset"] == "tiny" and meta["engan.step"] == "7"
    g2 = load_generator(p)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(g(x), g2(x))
    with pytest.raises(CheckpointError, match="holds a 'tiny' generator, not 'paper'"):
        load_generator(p, preset="paper")


def test_corrupt_checkpoint_named_in_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_generator(bad)
