"""The shared SSL pieces against hand values and reference implementations (one process)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import ContrastiveLoss
from torch import nn

from cryomonai.ssl.functional import batch_shuffle, batch_unshuffle, concat_all_gather, ema_update
from cryomonai.ssl.losses import info_nce, nt_xent, sinkhorn, vicreg_terms


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize(("b", "k", "tau"), [(4, 16, 0.2), (3, 128, 0.07)])
def test_info_nce_collinear_with_queue_is_log_k_plus_1(b: int, k: int, tau: float) -> None:
    # every logit is 1/τ, so the softmax over [positive, K negatives] is uniform: −log(1/(K+1))
    v = _unit(1, 8)
    loss = info_nce(v.expand(b, 8), v.expand(b, 8), v.expand(k, 8), temperature=tau)
    assert loss.item() == pytest.approx(math.log(k + 1), rel=1e-5)


def test_info_nce_collinear_in_batch_is_log_b() -> None:
    v = _unit(1, 8)
    assert info_nce(v.expand(5, 8), v.expand(5, 8), temperature=0.2).item() == pytest.approx(math.log(5), rel=1e-5)


def test_info_nce_orthogonal_negatives_hand_value() -> None:
    # q = k = e_0, queue = e_1..e_K: positive logit 1/τ, negatives 0 → log(1 + K·exp(−1/τ))
    eye = torch.eye(9)
    q = eye[:1].expand(2, 9)
    loss = info_nce(q, q, eye[1:], temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + 8 * math.exp(-2.0)), rel=1e-6)


def test_info_nce_in_batch_equals_cross_entropy_on_diagonal() -> None:
    q, k = _unit(6, 8, seed=1), _unit(6, 8, seed=2)
    expected = F.cross_entropy(q @ k.T / 0.3, torch.arange(6))
    torch.testing.assert_close(info_nce(q, k, temperature=0.3), expected)


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_nt_xent_equals_monai_contrastive_loss(tau: float) -> None:
    z1, z2 = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), torch.randn(8, 16)
    torch.testing.assert_close(nt_xent(z1, z2, tau), ContrastiveLoss(temperature=tau)(z1, z2))


def test_nt_xent_collinear_is_log_2n_minus_1() -> None:
    # all 2N − 1 candidates of an anchor (1 positive + 2N − 2 negatives) have logit 1/τ
    v = torch.ones(5, 4)
    assert nt_xent(v, 3 * v, 0.5).item() == pytest.approx(math.log(2 * 5 - 1), rel=1e-5)


def test_matched_pairs_beat_shuffled_pairs() -> None:
    z1 = _unit(16, 32, seed=3)
    z2 = F.normalize(z1 + 0.1 * _unit(16, 32, seed=4), dim=1)
    perm = torch.roll(torch.arange(16), 1)
    assert nt_xent(z1, z2, 0.5) < nt_xent(z1, z2[perm], 0.5)
    queue = _unit(32, 32, seed=5)
    assert info_nce(z1, z2, queue, 0.2) < info_nce(z1, z2[perm], queue, 0.2)


def test_sinkhorn_codes_are_equipartitioned() -> None:
    b, k = 12, 4
    scores = _unit(b, 8, seed=6) @ _unit(k, 8, seed=7).T  # (B, K) cosines
    codes = sinkhorn(scores, eps=0.05, n_iters=3)
    assert codes.shape == (b, k) and (codes >= 0).all()
    # the last Sinkhorn step normalises per sample: each code sums to exactly 1
    torch.testing.assert_close(codes.sum(1), torch.ones(b))
    # each prototype gets B/K samples' mass at convergence; 3 iterations already move towards it
    converged = sinkhorn(scores, eps=0.05, n_iters=200)
    torch.testing.assert_close(converged.sum(0), torch.full((k,), b / k), rtol=0, atol=1e-3)
    raw = torch.softmax(scores / 0.05, dim=1).sum(0)
    assert (codes.sum(0) - b / k).abs().max() < (raw - b / k).abs().max()


def test_sinkhorn_hand_values() -> None:
    # equal scores → uniform codes 1/K; a constant shift of the scores changes nothing
    torch.testing.assert_close(sinkhorn(torch.zeros(6, 3)), torch.full((6, 3), 1 / 3))
    s = _unit(6, 4, seed=8) @ _unit(3, 4, seed=9).T
    torch.testing.assert_close(sinkhorn(s + 0.7), sinkhorn(s))
    # B = K with one clear winner per sample → (nearly) a permutation matrix
    codes = sinkhorn(torch.eye(3), eps=0.05, n_iters=3)
    assert (codes.argmax(1) == torch.arange(3)).all() and (codes.diagonal() > 0.99).all()


def test_ema_update_is_exact() -> None:
    torch.manual_seed(0)
    target, online = nn.Linear(4, 3), nn.Linear(4, 3)
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, 0.9)
    for p_t, p_0, p_o in zip(target.parameters(), before, online.parameters()):
        assert torch.equal(p_t, p_0 * 0.9 + p_o * (1 - 0.9))
        assert not torch.equal(p_t, p_0)


def test_gather_and_shuffle_are_identities_in_one_process() -> None:
    x = torch.randn(5, 3)
    assert concat_all_gather(x) is x
    xs, idx = batch_shuffle(x, generator=torch.Generator().manual_seed(0))
    assert sorted(xs[:, 0].tolist()) == sorted(x[:, 0].tolist())
    torch.testing.assert_close(batch_unshuffle(xs, idx), x)


def test_vicreg_terms_hand_values() -> None:
    # ±2 on a 2-level factorial design: centred, std = sqrt(16/3) > 1, uncorrelated columns
    z = 2.0 * torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    inv, var, cov = vicreg_terms(z, z)
    assert inv.item() == 0.0 and var.item() == 0.0 and cov.item() == 0.0
    # collapse: every row equal → std = sqrt(1e-4) = 0.01 → hinge 0.99 per view (½ each)
    inv, var, cov = vicreg_terms(torch.ones(4, 3), torch.zeros(4, 3))
    assert inv.item() == pytest.approx(1.0)
    assert var.item() == pytest.approx(0.99, rel=1e-6)
    assert cov.item() == 0.0
    # perfectly correlated pair of columns x, 2x: off-diagonal cov² summed twice, / E per view
    x = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    zc = torch.cat([x, 2 * x], dim=1)  # var(x) = 4/3, cov(x, 2x) = 8/3
    _, _, cov = vicreg_terms(zc, zc)
    assert cov.item() == pytest.approx(2 * (2 * (8 / 3) ** 2 / 2), rel=1e-6)


@pytest.mark.parametrize("name", ["nt_xent", "info_nce", "vicreg_terms", "swapped_prediction", "sinkhorn"])
def test_losses_keep_float32_under_bf16_autocast(name: str) -> None:
    """Inside the bundle's ``amp`` (bf16 autocast) every loss computes in float32: the same value as
    without autocast (to float32 rounding), from bf16 inputs as well, and gradients reach the inputs."""
    from cryomonai.ssl import losses

    g = torch.Generator().manual_seed(0)
    z1, z2 = (F.normalize(torch.randn(8, 16, generator=g), dim=1) for _ in range(2))
    args = {
        "nt_xent": (z1, z2, 0.2),
        "info_nce": (z1, z2, F.normalize(torch.randn(32, 16, generator=g), dim=1), 0.2),
        "vicreg_terms": (z1, z2),
        "swapped_prediction": (torch.stack([z1, z2]), torch.softmax(torch.stack([z2, z1]) * 5, dim=2), 0.1),
        "sinkhorn": (z1, 0.03),
    }[name]
    fn = getattr(losses, name)
    reference = fn(*args)
    leaf = args[0].clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fn(leaf, *args[1:])
        from_bf16 = fn(args[0].bfloat16(), *args[1:])
    for ref, got in zip(*(torch.atleast_1d(*(t if isinstance(t, tuple) else (t,))) for t in (reference, inside))):
        assert got.dtype == torch.float32
        assert torch.allclose(got, ref, atol=1e-6, rtol=1e-6)
    first = from_bf16[0] if isinstance(from_bf16, tuple) else from_bf16
    assert first.dtype == torch.float32
    if name != "sinkhorn":  # codes carry no gradient
        total = sum(t.sum() for t in (inside if isinstance(inside, tuple) else (inside,)))
        total.backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
