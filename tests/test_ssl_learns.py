"""Every registered SSL method *learns*: its frozen features separate classes better than random ones.

A loss that falls is not enough (a method can lower its loss and leave the features as useless as at
initialisation). Here each method of :data:`cryomonai.ssl.METHODS` pretrains for a few steps on a
tiny unlabelled set — four similar-sized complexes (240–260 kDa templates) at random 3D rotations,
12³, light noise — with the same SO(3) views as the ``cpu`` preset, and a linear probe (5-fold
cross-validated logistic regression) on the frozen encoder features of held-out particles must beat
the probe on the *same encoder at initialisation* by 5 points. What each method needs to learn at
this scale is in :data:`NEEDS` (and in docs/results/grid_ssl_methods.md, "What each SSL method needs").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryomonai.networks import RB3D
from cryomonai.ssl import METHODS, build_method

CLASSES = ("1bxn", "1qvr", "1u6g", "3cf3")
BOX, STEPS, BATCH = 12, 100, 16
#: the settings each method needs to learn at this scale (small queue / prototype counts for 64 particles)
NEEDS: dict[str, dict] = {
    "simclr": {},
    # MoCo v2's linear-free head (no BatchNorm) sat at random features; a BN head and the symmetric loss learn
    "moco": {"queue_size": 32, "momentum": 0.99, "head_norm": "batch", "symmetric": True},
    # SwAV: few prototypes, an early queue, softer predictions (τ 0.2) and sharper codes (ε 0.03);
    # with the defaults (30 prototypes, τ 0.1, ε 0.05) the loss stays at log K
    "swav": {"n_prototypes": 10, "freeze_prototypes_steps": 0, "queue_length": 64, "queue_start_step": 20,
             "temperature": 0.2, "sinkhorn_eps": 0.03},
    "vicreg": {"expander_dims": (128, 128)},
}


def _particles(seed: int, n_per_class: int) -> tuple[torch.Tensor, np.ndarray]:
    """``(N, 1, BOX, BOX, BOX)`` randomly rotated, lightly noisy templates and their labels ``(N,)``."""
    from cryomonai.data.extract import fourier_resize
    from cryomonai.simulate.geometry import random_rotations, rotate_shift
    from cryomonai.simulate.templates import load_templates

    maps = load_templates(list(CLASSES))
    temps = torch.stack([torch.as_tensor(np.asarray(fourier_resize(maps[c].astype(np.float32), (BOX,) * 3)),
                                         dtype=torch.float32) for c in CLASSES])
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    vols = rotate_shift(temps[labels], random_rotations(rng, len(labels)))
    noise = torch.randn(vols.shape, generator=torch.Generator().manual_seed(seed))
    return (vols + 0.3 * vols.std() * noise)[:, None].float(), labels


def _probe_accuracy(encoder: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    encoder.eval()
    with torch.no_grad():
        feats = encoder((x - x.mean((2, 3, 4), keepdim=True)) / x.std((2, 3, 4), keepdim=True)).numpy()
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    return float(cross_val_score(LogisticRegression(C=0.1, max_iter=2000), feats, y, cv=5).mean())


@pytest.fixture(scope="module")
def data():
    return _particles(0, 16), _particles(1, 25)


def test_every_registered_method_has_its_needs_listed():
    assert set(NEEDS) == set(METHODS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_frozen_features_separate_classes_better_than_random_features(name, data):
    from cryomonai.transforms import cryo3d_views

    (x_train, _), (x_test, y_test) = data
    torch.manual_seed(0)
    method = build_method(name, RB3D(), **NEEDS[name])
    before = _probe_accuracy(method.encoder, x_test, y_test)
    # the batched twin of the pipeline's SO(3) views (tested equal to the per-sample one elsewhere), for speed
    views = cryo3d_views(rotation="so3", tilt_range=None, crop_prob=0, lowpass_prob=0, ctf_prob=0, noise_prob=0).batched()
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    method.train()
    for step in range(STEPS):
        batch = x_train[rng.choice(len(x_train), BATCH, replace=False)]
        out = method.training_step(views((batch - batch.mean((2, 3, 4), keepdim=True)) / batch.std((2, 3, 4), keepdim=True)))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.on_train_step_end(step, STEPS)
    after = _probe_accuracy(method.encoder, x_test, y_test)
    assert after >= before + 0.05, f"{name}: probe {after:.3f} after pretraining vs {before:.3f} at initialisation"
