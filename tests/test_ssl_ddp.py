"""The distributed paths on CPU: a 2-process gloo group against one process on the whole batch.

Each rank gets half of a global batch. With gathering, the methods must see the global batch:
the Sinkhorn codes equal those of one process on the concatenated batch, MoCo's queue is the same
on every rank and equals the single-process queue, and the mean of the ranks' losses equals the
single-process loss (BatchNorm is off in the heads here: unsynchronised BatchNorm would differ).
"""

from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from cryomonai.engines import release_ddp
from cryomonai.networks import RB3D
from cryomonai.ssl import METHODS, build_method
from cryomonai.ssl.functional import batch_shuffle, batch_unshuffle, concat_all_gather
from cryomonai.ssl.losses import sinkhorn

WORLD, B, BOX = 2, 3, 8
KW = {  # no BatchNorm (see the module docstring), queues small
    "simclr": {"head_norm": None},
    "moco": {"queue_size": 16},
    "swav": {"head_norm": None, "n_prototypes": 5, "freeze_prototypes_steps": 0, "queue_length": 0},
    "vicreg": {"head_norm": None, "expander_dims": (32, 32)},
}


def _global_inputs() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Scores ``(W·B, 5)`` and two views ``(W·B, 1, 8, 8, 8)``, the same on every rank."""
    g = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(WORLD * B, 8, generator=g), dim=1)
    scores = scores @ torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1).T
    # samples differ in contrast and mean, so that their embeddings differ clearly at initialisation
    scale = torch.linspace(0.2, 5.0, WORLD * B).view(-1, 1, 1, 1, 1)
    base = scale * torch.randn(WORLD * B, 1, BOX, BOX, BOX, generator=g) + scale.flip(0) - 2.5
    return scores, [base + 0.1 * torch.randn(base.shape, generator=g) for _ in range(2)]


def _method(name: str):
    torch.manual_seed(0)  # identical initial weights (and MoCo queue) on every rank
    return build_method(name, RB3D(), **KW[name])


def _worker(rank: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=60)  # a rank that fails must not leave the other waiting forever
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD, timeout=timeout)
    try:
        scores, views = _global_inputs()
        local = slice(rank * B, (rank + 1) * B)
        result: dict[str, object] = {"codes": sinkhorn(scores[local])}
        result["gathered"] = concat_all_gather(torch.full((B, 2), float(rank)))
        x = torch.arange(B * 4.0).view(B, 4) + 100 * rank
        shuffled, idx = batch_shuffle(x)
        result["shuffled"], result["unshuffled"] = shuffled, batch_unshuffle(shuffled, idx)
        for name in sorted(METHODS):
            method = _method(name)
            result[f"{name}_loss"] = method.training_step([v[local] for v in views])["loss"].detach()
            if name == "moco":
                result["moco_queue"], result["moco_ptr"] = method.queue.clone(), method.queue_ptr.clone()
        for name in sorted(METHODS):  # the real entry point: DDP(method)(views) → training_step
            ddp = DistributedDataParallel(_method(name), broadcast_buffers=False)
            ddp([v[local] for v in views])["loss"].backward()
            result[f"{name}_grad"] = ddp.module.encoder.features.conv0.weight.grad.clone()
            release_ddp(ddp)  # the product's teardown order: reducers freed while the group lives
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


def test_concat_all_gather_is_in_rank_order(ranks: list[dict]) -> None:
    expected = torch.cat([torch.full((B, 2), float(r)) for r in range(WORLD)])
    for result in ranks:
        torch.testing.assert_close(result["gathered"], expected)


def test_sinkhorn_codes_match_one_process_on_the_whole_batch(ranks: list[dict]) -> None:
    scores, _ = _global_inputs()
    torch.testing.assert_close(torch.cat([r["codes"] for r in ranks]), sinkhorn(scores))


def test_batch_shuffle_permutes_across_ranks_and_unshuffles(ranks: list[dict]) -> None:
    originals = [torch.arange(B * 4.0).view(B, 4) + 100 * r for r in range(WORLD)]
    shuffled = torch.cat([r["shuffled"] for r in ranks])
    assert sorted(shuffled[:, 0].tolist()) == sorted(torch.cat(originals)[:, 0].tolist())
    for result, original in zip(ranks, originals):
        torch.testing.assert_close(result["unshuffled"], original)


def test_moco_queues_agree_across_ranks_and_with_one_process(ranks: list[dict]) -> None:
    _, views = _global_inputs()
    single = _method("moco")
    single.training_step(views)
    for result in ranks:
        torch.testing.assert_close(result["moco_queue"], single.queue)
        assert int(result["moco_ptr"]) == int(single.queue_ptr) == WORLD * B


@pytest.mark.parametrize("name", sorted(METHODS))
def test_mean_rank_loss_equals_one_process_loss(ranks: list[dict], name: str) -> None:
    _, views = _global_inputs()
    single = _method(name).training_step(views)["loss"].detach()
    mean = torch.stack([r[f"{name}_loss"] for r in ranks]).mean()
    torch.testing.assert_close(mean, single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_ddp_wrapped_method_averages_gradients(ranks: list[dict], name: str) -> None:
    grads = [r[f"{name}_grad"] for r in ranks]
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
