"""SSL methods: the same tests for every entry of METHODS, then each method's own mechanics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cryomonai.errors import ConfigError
from cryomonai.networks import RB3D
from cryomonai.ssl import METHODS, MoCo, SwAV, build_method
from cryomonai.ssl.losses import sinkhorn

BOX, BATCH = 8, 4  # rb3d works down to 8³: max-pool → 4³, adaptive pool → 2³
# small sizes, and every parameter trainable from step 0 (SwAV freezes its prototypes by default)
TINY = {
    "moco": {"queue_size": 16},
    "swav": {"n_prototypes": 8, "freeze_prototypes_steps": 0},
    "vicreg": {"expander_dims": (64, 64)},
}


def _method(name: str, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return build_method(name, RB3D(), **{**TINY.get(name, {}), **kw})


def _views(seed: int = 0, batch: int = BATCH) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, 1, BOX, BOX, BOX, generator=g)
    return [base + 0.1 * torch.randn(base.shape, generator=g) for _ in range(2)]


def _step(method: nn.Module, opt: torch.optim.Optimizer, views: list[torch.Tensor], step: int) -> float:
    out = method.training_step(views)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    method.on_train_step_end(step, 100)
    return out["loss"].item()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_training_step_returns_finite_scalar_loss_and_detached_logs(name: str) -> None:
    method = _method(name)
    assert method.n_views == 2
    out = method.training_step(_views())
    assert out["loss"].ndim == 0 and out["loss"].requires_grad and torch.isfinite(out["loss"])
    for key, value in out.items():
        if key != "loss":
            assert value.ndim == 0 and not value.requires_grad and torch.isfinite(value), key


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    method = _method(name)
    method.training_step(_views())["loss"].backward()
    trainable = [(n, p) for n, p in method.named_parameters() if p.requires_grad]
    assert any(n.startswith("encoder.") for n, _ in trainable)
    for pname, p in trainable:
        assert p.grad is not None and torch.isfinite(p.grad).all() and (p.grad != 0).any(), pname


@pytest.mark.parametrize("name", sorted(METHODS))
def test_adam_steps_lower_the_loss_on_a_fixed_batch(name: str) -> None:
    # the state (MoCo's queue, SwAV's queue, step counter) is held fixed: on a fixed batch MoCo would
    # otherwise fill its queue with this very batch's keys, which are hard negatives for it
    method = _method(name)
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    views = _views()
    state = {n: b.clone() for n, b in method.named_buffers()}
    losses = []
    for _ in range(8):
        losses.append(_step(method, opt, views, step=0))
        for n, b in method.named_buffers():
            b.copy_(state[n])
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", sorted(METHODS))
def test_forward_gives_encoder_features(name: str) -> None:
    method = _method(name).eval()
    x = _views()[0]
    with torch.no_grad():
        torch.testing.assert_close(method(x), method.encoder(x))
    assert method(x).shape == (BATCH, method.encoder.num_features)
    views = _views()
    assert set(method(views)) == set(method.training_step(views))  # a list of views: training_step


@pytest.mark.parametrize("name", sorted(METHODS))
def test_state_dict_round_trip_resumes_exactly(name: str) -> None:
    a = _method(name, seed=0, **({"queue_length": 8, "queue_start_step": 1} if name == "swav" else {}))
    opt = torch.optim.Adam(a.parameters(), lr=1e-3)
    for step in range(1, 4):
        _step(a, opt, _views(seed=step), step)
    b = _method(name, seed=1, **({"queue_length": 8, "queue_start_step": 1} if name == "swav" else {}))
    b.load_state_dict(a.state_dict())
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(ta, tb), na
    assert int(b.steps_done) == 3
    views = _views(seed=9)
    assert torch.equal(a.training_step(views)["loss"], b.training_step(views)["loss"])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_wrong_views_are_a_user_error(name: str) -> None:
    method = _method(name)
    with pytest.raises(ConfigError, match="views"):
        method.training_step(_views()[:1])
    with pytest.raises(ConfigError, match="views"):
        method.training_step([_views()[0], _views(batch=2)[0]])


def test_build_method_unknown_name() -> None:
    with pytest.raises(ConfigError, match="moco"):
        build_method("byol", RB3D())


# ---------------------------------------------------------------- MoCo


def test_moco_queue_is_fifo_and_wraps() -> None:
    method = MoCo(RB3D(), queue_size=6, proj_dim=3)
    k1, k2 = torch.arange(12.0).view(4, 3), 100 + torch.arange(12.0).view(4, 3)
    method.enqueue(k1)
    assert int(method.queue_ptr) == 4
    torch.testing.assert_close(method.queue[:4], k1)
    method.enqueue(k2)  # slots 4, 5 then wraps to 0, 1; slots 2, 3 still hold the oldest keys
    assert int(method.queue_ptr) == 2
    torch.testing.assert_close(method.queue, torch.cat([k2[2:], k1[2:], k2[:2]]))
    c = torch.arange(8.0).view(8, 1).expand(8, 3)  # more keys than slots, written from slot 2:
    method.enqueue(c)  # c0@2 c1@3 c2@4 c3@5 c4@0 c5@1 c6@2 c7@3 → [c4, c5, c6, c7, c2, c3], pointer 4
    assert int(method.queue_ptr) == 4
    torch.testing.assert_close(method.queue, c[[4, 5, 6, 7, 2, 3]])


def test_moco_step_enqueues_the_key_encoders_keys() -> None:
    method = _method("moco")
    views = _views()
    with torch.no_grad():
        keys = F.normalize(method.key_head(method.key_encoder(views[1])), dim=1)
    method.training_step(views)
    assert int(method.queue_ptr) == BATCH
    torch.testing.assert_close(method.queue[:BATCH], keys)
    method.symmetric = True
    method.training_step(views)
    assert int(method.queue_ptr) == 3 * BATCH


def test_moco_key_encoder_is_the_ema_of_the_query_encoder() -> None:
    method = _method("moco", momentum=0.9)
    for p_q, p_k in zip(method.encoder.parameters(), method.key_encoder.parameters()):
        assert torch.equal(p_q, p_k) and not p_k.requires_grad
    keys_before = [p.detach().clone() for p in method.key_encoder.parameters()]
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    _step(method, opt, _views(), step=1)
    for p_k, p_k0, p_q in zip(method.key_encoder.parameters(), keys_before, method.encoder.parameters()):
        assert torch.equal(p_k, p_k0 * 0.9 + p_q * (1 - 0.9))  # k ← m·k + (1 − m)·q
        assert not torch.equal(p_k, p_q)


def test_moco_cosine_momentum_reaches_one() -> None:
    method = _method("moco", momentum=0.9, momentum_cosine=True)
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)
    keys_before = [p.detach().clone() for p in method.key_encoder.parameters()]
    method.on_train_step_end(100, 100)  # m = 1 at the end of the run: the key encoder is frozen
    assert all(torch.equal(a, b) for a, b in zip(method.key_encoder.parameters(), keys_before))


def test_moco_with_batchnorm_runs_on_one_device() -> None:
    torch.manual_seed(0)
    method = MoCo(RB3D(norm="batch"), queue_size=8)
    assert method.shuffle_bn  # would shuffle under torch.distributed; one process has nothing to shuffle
    assert torch.isfinite(method.training_step(_views())["loss"])


# ---------------------------------------------------------------- SwAV


def test_swav_freezes_prototypes_then_trains_them() -> None:
    method = _method("swav", freeze_prototypes_steps=2)
    method.training_step(_views())["loss"].backward()
    assert method.prototypes.weight.grad is None and method.head[0].weight.grad is not None
    method.on_train_step_end(2, 10)
    method.training_step(_views())["loss"].backward()
    assert method.prototypes.weight.grad is not None
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(8))


def test_swav_queue_starts_late_and_is_used_once_full() -> None:
    method = _method("swav", queue_length=2 * BATCH, queue_start_step=1)
    method.training_step(_views(seed=1))
    assert int(method.queue_count) == 0  # step 0 < queue_start_step
    method.on_train_step_end(1, 10)
    embeddings = []
    for seed in (2, 3, 4):
        views = _views(seed=seed)
        with torch.no_grad():
            z = F.normalize(method.head(method.encoder(torch.cat(views))), dim=1).view(2, BATCH, -1)
        embeddings.append(z)  # (V, B, P)
        if seed < 4:
            method.training_step(views)
    assert int(method.queue_count) == 2 * BATCH
    torch.testing.assert_close(method.queue, torch.cat(embeddings[1::-1], dim=1))  # newest first
    scores = embeddings[2][0] @ method.prototypes.weight.T  # a new batch, view 0
    with_queue = sinkhorn(torch.cat([method.queue[0] @ method.prototypes.weight.T, scores]))[-BATCH:]
    torch.testing.assert_close(method._codes(scores, 0, method.prototypes.weight), with_queue)
    assert not torch.allclose(with_queue, sinkhorn(scores))


class _Flat(nn.Module):
    """A linear encoder for the toy problem (the interface: forward → (B, F), num_features, cam_layer)."""

    def __init__(self, n_in: int, f: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(1), nn.Linear(n_in, f), nn.ReLU())
        self.num_features, self.cam_layer = f, "net.1"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("encoder", ["flat", pytest.param("rb3d", marks=pytest.mark.slow)])
def test_swav_gets_clearly_below_log_k_on_a_separable_toy(encoder: str) -> None:
    # 4 classes = 4 random 8³ templates + noise; views add fresh noise. Uniform predictions cost
    # log K, the value SwAV stalls at when it learns nothing; learning the clusters goes far below
    # (≈ 0.15–0.3 log K after 40 steps over seeds), without collapsing: the prototypes are pure
    # (31 or 32 of the 32 samples share their prototype with their own class only).
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    k = 12
    x = torch.randn(4, 1, 8, 8, 8, generator=g).repeat_interleave(8, 0)
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    net = _Flat(8**3) if encoder == "flat" else RB3D()
    method = SwAV(net, n_prototypes=k, proj_dim=16, freeze_prototypes_steps=0, queue_length=0)
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    losses = []
    for step in range(1, 41):
        views = [x + 0.3 * torch.randn(x.shape, generator=g) for _ in range(2)]
        losses.append(_step(method, opt, views, step))
    assert sum(losses[-5:]) / 5 < 0.5 * math.log(k), losses
    with torch.no_grad():  # train mode: the head's BatchNorm uses batch statistics, as in training
        z = F.normalize(method.head(method.encoder(x)), dim=1)
    winners = (z @ method.prototypes.weight.T).argmax(dim=1)  # (32,) prototype of each sample
    labels = torch.arange(4).repeat_interleave(8)
    counts = torch.zeros(k, 4).index_put_((winners, labels), torch.ones(32), accumulate=True)  # (K, class)
    purity = counts.max(dim=1).values.sum() / 32  # share of samples in their prototype's majority class
    assert purity >= 0.9, winners.view(4, 8)  # a collapse to one prototype would give 0.25
