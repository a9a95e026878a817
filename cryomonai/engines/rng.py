"""Random state per epoch, so that a run resumed from an epoch checkpoint is exact.

A checkpoint holds the weights, buffers (the MoCo queue), optimizer, scheduler and epoch, but not
the random streams a training epoch draws from: the shuffling of the data loader (a seed drawn
from torch's default generator when each epoch's iterator starts), the MONAI transforms' own
``self.R`` (the views of Gupta et al. 2022, §3.3; with ``num_workers=0`` they live in the main
process and carry over from epoch to epoch) and torch/numpy/``random`` themselves. A run resumed
after epoch ``e`` would start epoch ``e + 1`` from the random state of a *fresh* process, and
differ from the run that never stopped.

Rather than saving every generator's state (MONAI transforms, the sampler, the worker seeds …),
:class:`RNGState` makes the state at the start of an epoch a function of ``(seed, epoch, rank)``
alone: on Ignite's ``EPOCH_STARTED`` it reseeds

* ``torch`` (CPU and every CUDA device), ``numpy``'s and Python's global generators;
* every ``Randomizable`` in the training set (MONAI's :func:`~monai.data.utils.set_rnd`, as
  :class:`monai.data.DataLoader` does when it is built);
* a ``torch.Generator`` given to the data loader or its sampler.

The data loader's iterator for the epoch is then created, so its shuffling seed and, with
``num_workers > 0``, its workers' seeds (MONAI's ``worker_init_fn`` seeds the transforms from
them) follow. Whatever ran before (a whole earlier epoch, or nothing, in a resumed process),
epoch ``e`` sees the same random numbers. The checkpoint keeps only the seed; on resume the
saved seed is taken, so the continuation does not depend on ``--seed``. The rank enters the seed
so that DDP ranks draw different augmentations (a resume is exact with the same number of ranks).

Exact on CPU (``tests/test_resume.py`` kills a run mid-epoch and compares). On a GPU the result
is as deterministic as its kernels: ``monai.utils.set_determinism(seed,
use_deterministic_algorithms=True)`` is the switch for those. Resume is exact from epoch
checkpoints, not from iteration checkpoints in the middle of an epoch. Attach it after any
``EPOCH_STARTED`` handler that sets up the epoch's sampler (MONAI's trainer registers its
``DistributedSampler.set_epoch`` when it is built, so a bundle is fine), and keep
``persistent_workers`` off: persistent workers carry their transforms' state across epochs.

A bundle names it as one entry of the checkpoint (a ``CheckpointSaver``'s ``save_dict``, which
``resume_handlers`` loads), built with the trainer so that it attaches itself::

    "checkpoint": {
        ...,
        "rng": {"_target_": "cryomonai.engines.RNGState", "seed": "@seed", "trainer": "@train#trainer"}
    }

Example:
    >>> import torch
    >>> rng = RNGState(seed=0)
    >>> _ = rng.reseed(epoch=2)
    >>> a = torch.rand(2)
    >>> _ = torch.rand(5)  # … anything else the epoch drew …
    >>> _ = rng.reseed(epoch=2)
    >>> torch.equal(a, torch.rand(2)), rng.epoch_seed(2) != rng.epoch_seed(3)
    (True, True)
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd

__all__ = ["RNGState"]

logger = logging.getLogger(__name__)


class RNGState:
    """Reseed every random stream of a training run at the start of each epoch from ``(seed, epoch, rank)``.

    An object with ``state_dict``/``load_state_dict``, so it goes in a checkpoint next to the
    model and optimizer (see the module docstring for why this makes a resume exact).

    Args:
        seed: the run's seed (the bundle's ``@seed``).
        trainer: if given, :meth:`attach` to it now (what a bundle config does).
    """

    def __init__(self, seed: int = 0, trainer: Engine | None = None) -> None:
        self.seed = int(seed)
        if trainer is not None:
            self.attach(trainer)

    def __repr__(self) -> str:
        return f"RNGState(seed={self.seed})"

    def attach(self, engine: Engine) -> RNGState:
        """Reseed at every ``EPOCH_STARTED`` of ``engine`` (once, however often attached)."""
        if not engine.has_event_handler(self, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self)
        return self

    def epoch_seed(self, epoch: int, rank: int = 0) -> int:
        """The 32-bit seed of ``epoch`` on ``rank``: a hash (numpy ``SeedSequence``) of the three."""
        return int(np.random.SeedSequence([self.seed, int(epoch), int(rank)]).generate_state(1)[0])

    def reseed(self, epoch: int, dataloader: Any = None) -> int:
        """Seed torch, numpy, ``random``, and ``dataloader``'s generators and transforms for ``epoch``.

        Args:
            epoch: the epoch about to run (Ignite counts from 1).
            dataloader: the training data loader (its ``dataset``'s ``Randomizable`` parts and any
                ``generator`` of it or its sampler are reseeded), or None.

        Returns:
            the seed used.
        """
        seed = self.epoch_seed(epoch, idist.get_rank())
        torch.manual_seed(seed)  # also every CUDA device
        np.random.seed(seed)
        random.seed(seed)
        if dataloader is not None:
            sampler = getattr(dataloader, "sampler", None)
            for generator in (getattr(dataloader, "generator", None), getattr(sampler, "generator", None)):
                if isinstance(generator, torch.Generator):
                    generator.manual_seed(seed)
            dataset = getattr(dataloader, "dataset", None)
            if dataset is not None:
                set_rnd(dataset, seed)
        return seed

    def __call__(self, engine: Engine) -> None:
        """The ``EPOCH_STARTED`` handler: reseed for ``engine.state.epoch``, then start its data.

        At an epoch boundary the epoch's iterator is made now (Ignite's public ``set_data``), from
        the seeds just set: left to Ignite, the previous epoch's iterator would first be run to
        its end, and a sampler drawing from a shared ``torch.Generator`` would draw once more.
        """
        state = engine.state
        self.reseed(state.epoch, state.dataloader)
        if state.dataloader is not None and state.epoch_length and state.iteration % state.epoch_length == 0:
            engine.set_data(state.dataloader)

    def state_dict(self) -> dict[str, int]:
        """``{"seed": …}``: all a resume needs (safe for ``torch.load(weights_only=True)``)."""
        return {"seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the saved seed, so a resumed run continues the saved one whatever ``--seed`` says."""
        saved = int(state["seed"])
        if saved != self.seed:
            logger.warning("resuming with the checkpoint's seed %d (this run was given %d)", saved, self.seed)
        self.seed = saved
