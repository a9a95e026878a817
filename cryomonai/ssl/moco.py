"""MoCo v2 (He et al. 2020, "Momentum contrast for unsupervised visual representation learning",
CVPR; Chen, Fan, Girshick & He 2020, "Improved baselines with momentum contrastive learning").

The method Gupta et al. (2022) found best on cryo-ET: a query encoder + MLP head trained by InfoNCE
(:func:`info_nce`) against a positive key from a momentum ("key") encoder and a FIFO queue of ``K``
past keys. Defaults are the paper's (§4): ``K = 128`` (64 for their experimental data), ``m = 0.999``,
``τ = 0.2``; the head is MoCo v2's ``F → F → 128`` without BatchNorm.

* Runs on one device or many: under ``torch.distributed`` the keys are gathered before enqueueing
  (every rank holds the same queue) and, if the encoder has BatchNorm, the key batch is shuffled
  across ranks (shuffling BN). ``rb3d`` has no BatchNorm by default, so shuffling is off for it.
* The queue (``(K, P)``, unit rows) and ``queue_ptr`` are buffers: saved and resumed exactly.
* ``on_train_step_end`` does the momentum update after the optimizer step, which is the same as
  builder.py's update at the start of the next forward.

Example:
    >>> import torch
    >>> from cryomonai.networks import build_encoder
    >>> method = MoCo(build_encoder("rb3d"), queue_size=16)
    >>> out = method.training_step([torch.randn(4, 1, 16, 16, 16) for _ in range(2)])
    >>> int(method.queue_ptr)
    4
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cryomonai.ssl.base import SSLMethod
from cryomonai.ssl.functional import batch_shuffle, batch_unshuffle, concat_all_gather, ema_update, is_distributed
from cryomonai.ssl.losses.info_nce import info_nce

__all__ = ["MoCo"]


class MoCo(SSLMethod):
    """MoCo v2 with a FIFO queue of keys and a momentum key encoder.

    Args:
        encoder: query encoder ``f_q`` (``num_features = F``); the key encoder is a deep copy.
        head_norm: norm in the MLP head (``None``, as MoCo v2).
        queue_size: ``K``, number of negative keys (128).
        momentum: ``m`` of the key encoder update (0.999).
        temperature: ``τ`` (0.2).
        symmetric: also contrast view 2 as query against view 1 as key (loss averaged, both key
            batches enqueued), as in MoCo v3 / the MoCo CIFAR demo.
        momentum_cosine: raise ``m`` to 1 along a half cosine over the run (BYOL / MoCo v3); off in
            the paper.
        shuffle_bn: shuffle the key batch across ranks; ``None`` → when distributed and the
            encoder has BatchNorm.
        head: the MLP head's ``proj_dim`` (embedding size ``P``, 128) and ``hidden_dim`` (``None`` →
            ``F``): :meth:`SSLMethod.projection_head`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head_norm: str | tuple | None = None,
        queue_size: int = 128,
        momentum: float = 0.999,
        temperature: float = 0.2,
        symmetric: bool = False,
        momentum_cosine: bool = False,
        shuffle_bn: bool | None = None,
        **head: Any,
    ) -> None:
        super().__init__(encoder)
        self.head = self.projection_head(head_norm=head_norm, **head)
        self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.momentum, self.temperature = momentum, temperature
        self.symmetric, self.momentum_cosine = symmetric, momentum_cosine
        has_bn = any(isinstance(m, _BatchNorm) for m in encoder.modules())
        self.shuffle_bn = has_bn if shuffle_bn is None else shuffle_bn
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, self.head.out_features), dim=1))  # (K, P)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        """Key embeddings ``(B, C, D, H, W) → (B, P)``, unit rows, no gradient."""
        shuffle = self.shuffle_bn and is_distributed()
        if shuffle:
            x, idx_unshuffle = batch_shuffle(x)
        k = F.normalize(self.key_head(self.key_encoder(x)), dim=1)  # keys: (B, P)
        return batch_unshuffle(k, idx_unshuffle) if shuffle else k

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` ``(n, P)`` (already gathered) at the pointer, oldest first out, wrapping at ``K``."""
        k_size, n = self.queue.shape[0], keys.shape[0]
        keys = keys[-k_size:]  # more keys than slots: only the newest K survive, where a ring puts them
        start = self.queue_ptr + (n - keys.shape[0])
        self.queue[(start + torch.arange(keys.shape[0], device=keys.device)) % k_size] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % k_size)

    def _contrast(self, x_q: torch.Tensor, x_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """InfoNCE of queries from ``x_q`` against keys from ``x_k``; returns (loss, q, k)."""
        q = F.normalize(self.head(self.encoder(x_q)), dim=1)  # queries: (B, P)
        k = self._keys(x_k)  # keys: (B, P)
        # clone: the queue is written after this step but its old contents are needed by backward
        return info_nce(q, k, self.queue.clone().detach(), self.temperature), q, k

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views: 2 × ``(B, C, D, H, W)`` → ``{"loss", "pos_sim"}``; enqueues this step's keys."""
        self._check_views(views)
        loss, q, k = self._contrast(views[0], views[1])
        pos_sim = (q.detach() * k).sum(1).mean()  # mean positive cosine
        keys = [k]
        if self.symmetric:
            loss_21, _, k1 = self._contrast(views[1], views[0])
            loss, keys = 0.5 * (loss + loss_21), [k, k1]
        self.enqueue(concat_all_gather(torch.cat(keys)))
        return {"loss": loss, "pos_sim": pos_sim}

    @torch.no_grad()
    def on_train_step_end(self, step: int, total: int) -> None:
        """Momentum update of the key encoder and head from the just-updated query ones."""
        super().on_train_step_end(step, total)
        m = self.momentum
        if self.momentum_cosine:
            m = 1.0 - (1.0 - m) * (math.cos(math.pi * step / max(total, 1)) + 1.0) / 2.0
        ema_update(self.key_encoder, self.encoder, m)
        ema_update(self.key_head, self.head, m)
