"""The interface every self-supervised method has (one thin base class, no hierarchy beyond it).

A method is an ``nn.Module`` holding the backbone as ``encoder`` (so fine-tuning loads ``encoder.*``)
plus its own heads and state. The engine calls, per iteration::

    out = method.training_step(views)        # views: n_views tensors (B, 1, D, H, W)
    out["loss"].backward(); optimizer.step()
    method.on_train_step_end(step, total)    # step: optimizer steps done (1-based), total: planned

and ``method(x)`` gives encoder features ``(B, F)``. Under ``torch.distributed`` wrap the method in
``DistributedDataParallel(method, broadcast_buffers=False)`` and call ``ddp(views)``, which runs
``training_step`` inside ``forward`` (``broadcast_buffers=False``: SwAV's queue is per process; MoCo's
is kept identical on all ranks by gathering; add ``find_unused_parameters=True`` while SwAV's
prototypes are frozen). Constructor keyword arguments, with the papers'
defaults, are the config schema; the projection head's (``proj_dim``, ``hidden_dim``, ``head_norm``)
are :meth:`SSLMethod.projection_head`'s, passed on by the methods' ``**head``. All state (queues, pointers, the step counter) lives in buffers, so
``state_dict`` and MONAI's checkpoint handlers save and resume it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cryomonai.errors import ConfigError
from cryomonai.networks.heads import MLPHead

__all__ = ["SSLMethod"]


class SSLMethod(nn.Module):
    """Base of the SSL methods: holds ``encoder``, the step counter and the view check.

    Args:
        encoder: a registered encoder (``forward → (B, F)``, ``num_features``, ``cam_layer``).

    Attributes:
        n_views: number of augmented views ``training_step`` expects (2).
        steps_done: buffer, the ``step`` last passed to :meth:`on_train_step_end`.
    """

    n_views: int = 2

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        if not isinstance(getattr(encoder, "num_features", None), int):
            raise TypeError(f"{type(self).__name__}: the encoder has no integer 'num_features' "
                            "(build it with build_encoder(name))")
        self.encoder = encoder
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Encoder features ``(B, C, D, H, W) → (B, F)``; a list of views runs :meth:`training_step`.

        The second form is the entry point under ``DistributedDataParallel``, which synchronises
        gradients only for work done inside ``forward``: ``DDP(method, broadcast_buffers=False)(views)``.
        """
        if isinstance(x, (list, tuple)):
            return self.training_step(x)
        return self.encoder(x)

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss (``"loss"``, a scalar with gradient) and detached scalar logs for one batch of views."""
        raise NotImplementedError

    @torch.no_grad()
    def on_train_step_end(self, step: int, total: int) -> None:
        """Called after ``optimizer.step()``; ``step`` optimizer steps are done out of ``total``."""
        self.steps_done.fill_(int(step))

    def projection_head(
        self, proj_dim: int = 128, hidden_dim: int | None = None, head_norm: str | tuple | None = "batch"
    ) -> MLPHead:
        """The head ``F → hidden_dim (None: F) → proj_dim`` on the encoder's features (SimCLR, MoCo, SwAV).

        Its keyword arguments are part of the config schema of every method with such a head: they
        reach it through the method's ``**head`` (``ssl_method#proj_dim``, ``ssl_method#head_norm``), so
        their defaults are written here only. ``head_norm`` goes after the hidden Linear (``"batch"`` →
        BatchNorm1d, ``None`` for none).
        """
        f = self.encoder.num_features
        return MLPHead([f, hidden_dim or f, proj_dim], norm=head_norm)

    def _check_views(self, views: Sequence[torch.Tensor]) -> None:
        if len(views) != self.n_views or len({tuple(v.shape) for v in views}) != 1:
            shapes = [tuple(v.shape) for v in views]
            raise ConfigError(
                type(self).__name__,
                f"expected {self.n_views} views of one shape (B, C, D, H, W), got {shapes}",
                f"make {self.n_views} views per sample with the same box (MultiViewd)",
            )
