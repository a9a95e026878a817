"""The bundle driver (configs composed per run id) and the slice montages; the demo end to end is test_demo.py."""

import numpy as np
import pytest

from cryomonai.errors import ConfigError
from cryomonai.pipeline import bundle_configs


def test_bundle_configs_compose_overlays():
    files = bundle_configs("pretrain", method="swav", encoder="resnet10")
    assert [f.rsplit("/", 2)[-2:] for f in files][-2:] == [["methods", "swav.json"], ["encoders", "resnet10.json"]]
    with pytest.raises(ConfigError, match="no method 'nosuchmethod'.*use one of: moco, simclr, swav, vicreg"):
        bundle_configs("pretrain", method="nosuchmethod")
    with pytest.raises(ConfigError, match="no encoder 'nosuch'"):
        bundle_configs("finetune", encoder="nosuch")


def test_slice_montage_and_central_slices(tmp_path):
    from cryomonai.visualize.slices import central_slices, slice_montage

    v = np.zeros((8, 10, 12), np.float32)
    v[4, 5, 6] = 1
    xy, xz, yz = central_slices(v)
    assert xy.shape == (10, 12) and xz.shape == (8, 12) and yz.shape == (8, 10) and xy[5, 6] == xz[4, 6] == yz[4, 5] == 1
    assert central_slices(v, (1, 2, 3))[0].shape == (10, 12)
    png = slice_montage({"a": [v, v], "b": [v, v]}, ["one", "two"], tmp_path / "m.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
