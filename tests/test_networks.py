"""Encoders (parametrized over the ENCODERS registry), MLP heads and the classifier."""

from __future__ import annotations

import pytest
import torch
from monai.visualize import GradCAM
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.networks import ENCODERS, RB3D, Classifier, MLPHead, RB3DOriginal, build_encoder

# rb3d_original flattens the whole map, so it is built for one box; 16³ keeps it at 16.9 M parameters
SMALL_KW = {"rb3d_original": {"img_size": 16}}


def _build(name: str, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return build_encoder(name, **{**SMALL_KW.get(name, {}), **kw})


def _shape_cases() -> list:
    """Every encoder at 28³, 32³ and 64³; rb3d_original only at its own img_size (16³ here)."""
    cases = []
    for name in sorted(ENCODERS):
        if "img_size" in SMALL_KW.get(name, {}):
            cases.append((name, SMALL_KW[name]["img_size"]))
            continue
        cases += [(name, 28), (name, 32), pytest.param(name, 64, marks=pytest.mark.slow)]
    return cases


@pytest.mark.parametrize(("name", "size"), _shape_cases())
def test_output_is_b_by_num_features(name: str, size: int) -> None:
    net = _build(name).eval()
    with torch.no_grad():
        y = net(torch.randn(2 if size < 64 else 1, 1, size, size, size))
    assert y.shape == (y.shape[0], net.num_features)
    assert torch.isfinite(y).all() and y.abs().sum() > 0


def test_rb3d_original_rejects_another_box() -> None:
    net = _build("rb3d_original")  # img_size 16
    with pytest.raises(ConfigError, match="img_size"):
        net(torch.zeros(1, 1, 28, 28, 28))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_cam_layer_drives_monai_gradcam(name: str) -> None:
    net = _build(name)
    assert isinstance(net.get_submodule(net.cam_layer), nn.Module)
    clf = Classifier(net, num_classes=3).eval()
    cam = GradCAM(nn_module=clf, target_layers=clf.cam_layer)(torch.randn(2, 1, 16, 16, 16))
    assert cam.shape == (2, 1, 16, 16, 16)
    assert torch.isfinite(cam).all()


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_backward_reaches_every_parameter(name: str) -> None:
    net = _build(name).train()
    net(torch.randn(2, 1, 16, 16, 16)).square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert (p.grad != 0).any(), pname


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_state_dict_round_trip(name: str) -> None:
    a, b = _build(name, seed=0).eval(), _build(name, seed=1).eval()
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))
        b.load_state_dict(a.state_dict())
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_rb3d_parameter_count_and_flops() -> None:
    # stem 1·32·27 + 32 = 896; one block: right 32·16·27 + 16 = 13,840, left (32·16 + 16)
    # + (16·32·27 + 32) + (32·16 + 16) = 14,912 → 28,752; × 4 = 115,008; total 115,904
    net = RB3D()
    assert sum(p.numel() for p in net.parameters()) == 115_904
    assert net.num_features == 256
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        RB3D()(torch.zeros(1, 1, 32, 32, 32))
    # 2·MACs: stem 2·27·32·32³ = 56,623,104; blocks 4 · 2·(13,824 + 512 + 13,824 + 512)·16³ = 939,524,096
    assert counter.get_total_flops() == 996_147_200


def test_rb3d_original_parameter_count_at_32() -> None:
    # trunk 115,904 + FC 32·16³·1024 + 1024 = 134,218,752 + FC 1024·1024 + 1024 = 1,049,600
    with torch.device("meta"):
        net = RB3DOriginal(img_size=32)
    assert sum(p.numel() for p in net.parameters()) == 135_384_256
    assert net.num_features == 1024
    dropouts = [m.p for m in net.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.7] * 4 + [0.5, 0.5]  # element-wise (Keras) dropout, not Dropout3d


@pytest.mark.parametrize(
    ("norm", "layer"), [("batch", nn.BatchNorm3d), (["group", {"num_groups": 8}], nn.GroupNorm)]
)
def test_rb3d_norm_from_json(norm, layer) -> None:
    assert not any(isinstance(m, (nn.BatchNorm3d, nn.GroupNorm)) for m in RB3D().modules())
    net = RB3D(norm=norm)
    # one after the stem conv and one after each of the 4 convs of each of the 4 blocks
    assert sum(isinstance(m, layer) for m in net.modules()) == 1 + 4 * 4
    assert net(torch.randn(2, 1, 16, 16, 16)).shape == (2, 256)


def test_rb3d_spatial_dims_2() -> None:
    net = RB3D(spatial_dims=2, in_channels=3)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, net.num_features) == (2, 32 * 4)


def test_build_encoder_unknown_name() -> None:
    with pytest.raises(ConfigError, match="rb3d"):
        build_encoder("rb4d")


def test_mlp_head_layers() -> None:
    assert [type(m) for m in MLPHead([8, 16, 4])] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert [type(m) for m in MLPHead([8, 16, 4], norm=None)] == [nn.Linear, nn.ReLU, nn.Linear]
    assert [type(m) for m in MLPHead([8, 4], last_norm=True)] == [nn.Linear, nn.BatchNorm1d]
    assert MLPHead([8, 16, 16, 4])(torch.randn(3, 8)).shape == (3, 4)
    with pytest.raises(ConfigError):
        MLPHead([8])


def test_classifier_loads_encoder_weights_and_freezes() -> None:
    torch.manual_seed(0)
    pretrained = RB3D()
    ssl_state = {f"encoder.{k}": v for k, v in pretrained.state_dict().items()}
    ssl_state |= {"head.0.weight": torch.zeros(3, 3), "queue": torch.zeros(4, 3)}  # ignored
    clf = Classifier(RB3D(), num_classes=5, dropout=0.2, freeze_encoder=True)
    clf.load_encoder(ssl_state)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(clf.encoder(x), pretrained(x), rtol=0, atol=0)
    assert {k.split(".")[0] for k in clf.state_dict()} == {"encoder", "head"}

    clf.train()
    assert not clf.encoder.training and clf.head.training
    clf(x).sum().backward()
    assert all(p.grad is None for p in clf.encoder.parameters())
    assert all(p.grad is not None for p in clf.head.parameters())
    assert clf(x).shape == (2, 5)

    with pytest.raises(ConfigError, match="encoder"):
        clf.load_encoder({"encoder.features.conv0.weight": torch.zeros(1)})
    with pytest.raises(CryoDataError):
        clf.load_encoder({"head.0.weight": torch.zeros(1)})
