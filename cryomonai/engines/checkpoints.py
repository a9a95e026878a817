"""Checkpoints: what a run was trained with, loading a pretrained encoder, resuming a run.

MONAI's :class:`~monai.handlers.CheckpointSaver` writes ``{"model": …, "optimizer": …,
"lr_scheduler": …, "trainer": …, "run_info": …}`` (each object's ``state_dict``; an SSL method's
includes its buffers, e.g. the MoCo queue and pointer), and
:class:`~monai.handlers.CheckpointLoader` restores all of them, the trainer's epoch included.
This module adds what a cryo-ET workflow needs on top:

* :class:`RunInfo` — the encoder, SSL method and class names saved with the weights, so a
  checkpoint says what it is and a resume with another encoder or method fails early;
* :func:`load_pretrained_encoder` — fine-tuning (Gupta et al. 2022, §3.2) loads exactly the
  ``encoder.*`` weights of a pretraining checkpoint into a
  :class:`~cryomonai.networks.Classifier`, with a one-line :class:`~cryomonai.errors.CryoDataError`
  if the file is not a checkpoint or comes from another encoder;
* :func:`resume_handlers` — ``[CheckpointLoader(latest checkpoint)]`` or ``[]``, for a bundle's
  ``--resume true``;
* :class:`AtomicCheckpointSaver` — MONAI's ``CheckpointSaver`` whose files are never torn: MONAI
  builds Ignite's ``DiskSaver`` with ``atomic=False`` (a run killed while saving leaves half a
  file), and Ignite deletes the previous checkpoint *before* writing the next one (with
  ``n_saved=1`` a kill then leaves no complete checkpoint). This one writes through
  :func:`cryomonai.io.atomic_write` and deletes the replaced file only after the new one is in place.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver
from torch import nn

from cryomonai.errors import ConfigError, CryoDataError, CryoError
from cryomonai.io.atomic import atomic_write
from cryomonai.io.lock import FolderLock

__all__ = [
    "AtomicCheckpointSaver",
    "RunInfo",
    "check_classes",
    "latest_checkpoint",
    "load_checkpoint",
    "load_pretrained_encoder",
    "read_run_info",
    "resume_handlers",
]

_FIX_PRETRAIN = ("give a checkpoint the bundle's pretrain or finetune wrote (models/*.pt) or the name of shipped weights "
                 "(the model card lists them); to fine-tune from random weights: --pretrained ''")


class RunInfo:
    """What a checkpoint was trained with, saved in it as ``"run_info"`` (a plain dict of strings).

    An object with ``state_dict``/``load_state_dict`` (not itself a mapping: Ignite would recurse
    into it), so it goes in a ``CheckpointSaver``'s ``save_dict``. Loading (on resume) checks that
    the identity keys (``task``, ``encoder``, ``method``) agree with this run's.

    Args:
        info: strings, numbers or lists of them (``task``, ``encoder``, ``method``, ``classes`` …).

    Example:
        >>> info = RunInfo(task="pretrain", encoder="rb3d", method="moco")
        >>> saved = {"task": "pretrain", "encoder": "resnet10", "method": "moco"}
        >>> info.load_state_dict(saved)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        cryomonai.errors.ConfigError: checkpoint: was trained with encoder 'resnet10' but this run uses 'rb3d' — fix: ...
    """

    IDENTITY = ("task", "encoder", "method")

    def __init__(self, **info: Any) -> None:
        self.info = dict(info)

    def __repr__(self) -> str:
        return f"RunInfo({self.info})"

    def state_dict(self) -> dict[str, Any]:
        """The info as a plain dict (safe for ``torch.load(weights_only=True)``)."""
        return dict(self.info)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the saved info, after checking it describes the same kind of run."""
        for key in self.IDENTITY:
            if key in self.info and key in state and self.info[key] != state[key]:
                raise ConfigError(
                    "checkpoint",
                    f"was trained with {key} {state[key]!r} but this run uses {self.info[key]!r}",
                    f"resume with --{key} {state[key]}, or start a new run (--resume false, another --ckpt_dir)",
                )
        self.info.update(state)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint file written by ``CheckpointSaver`` (or ``torch.save`` of a dict).

    Raises:
        CryoDataError: the file is missing, not a PyTorch checkpoint, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CryoDataError(path, "checkpoint not found", _FIX_PRETRAIN)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any unpickling/zip error: the file is not a checkpoint
        raise CryoDataError(path, f"not a readable PyTorch checkpoint ({type(err).__name__})", _FIX_PRETRAIN) from None
    if not isinstance(ckpt, Mapping):
        raise CryoDataError(path, f"holds a {type(ckpt).__name__}, not a checkpoint dict", _FIX_PRETRAIN)
    return dict(ckpt)


def _model_state(ckpt: Mapping[str, Any], path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """The model ``state_dict`` of a checkpoint: its ``"model"`` entry, or the checkpoint itself."""
    state = ckpt.get("model", ckpt)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CryoDataError(path, "has no model weights (no 'model' state dict)", _FIX_PRETRAIN)
    return state


def read_run_info(path: str | os.PathLike, encoder: str | None = None) -> dict[str, Any]:
    """The :class:`RunInfo` saved in a checkpoint, checked against this run's ``encoder``.

    Raises:
        CryoDataError: the checkpoint has no run info.
        ConfigError: it was trained with another encoder.
    """
    info = load_checkpoint(path).get("run_info")
    if not isinstance(info, Mapping):
        raise CryoDataError(path, "has no 'run_info' (not written by this bundle)",
                            "give a checkpoint of cryomonai's bundle")
    _check_encoder(path, info, encoder)
    return dict(info)


def check_classes(info: Mapping[str, Any], class_names: Sequence[str], checkpoint: str | os.PathLike = "checkpoint") -> None:
    """Refuse to score a classifier (its run ``info``) on a table of other classes: its outputs are indices
    into its own ``classes``, so another table's labels would be compared with the wrong names, or the class
    layer would not even fit. A run info that records no classes is not checked.

    Raises:
        ConfigError: the table's classes are not the classifier's, in its order.
    """
    saved = info.get("classes")
    if saved is None or list(saved) == list(class_names):
        return

    def names(c: Sequence[str]) -> str:
        return f"{len(c)} classes ({', '.join(map(str, c[:4]))}{', …' if len(c) > 4 else ''})"

    raise ConfigError(f"checkpoint {checkpoint}", f"classifies {names(list(saved))}; the table has {names(list(class_names))}",
                      "score it on a table labelled with its classes, or classify the table with inference, which "
                      "needs no labels")


def _check_encoder(path: str | os.PathLike, info: Mapping[str, Any], encoder: str | None) -> None:
    saved = info.get("encoder")
    if encoder is not None and saved is not None and saved != encoder:
        raise ConfigError(
            path,
            f"was trained with encoder {saved!r} but this run builds {encoder!r}",
            f"use --encoder {saved}, or pretrain {encoder} first",
        )


def load_pretrained_encoder(
    model: nn.Module, checkpoint: str | os.PathLike | None, encoder: str | None = None, map_location: Any = "cpu"
) -> nn.Module:
    """Load the ``encoder.*`` weights of ``checkpoint`` into ``model.encoder``; return ``model``.

    The projection heads, momentum encoder and queue of an SSL checkpoint (or the class layer
    of a classifier's) are ignored; the classifier's head stays as initialised. No checkpoint
    (``None`` or ``""``) leaves the model at random initialisation (the paper's supervised
    baseline).

    Args:
        model: a :class:`~cryomonai.networks.Classifier` (has ``encoder`` and ``load_encoder``).
        checkpoint: a pretraining (or fine-tuning) checkpoint, or None/"" for random weights.
        encoder: the registry name this run builds; checked against the checkpoint's run info.
        map_location: where to load the tensors (they are copied into the model's own).

    Raises:
        ConfigError: the checkpoint was pretrained with another encoder (or other encoder arguments).
        CryoDataError: the file is missing or foreign, or
            its ``encoder.*`` weights do not fit ``model.encoder`` (other encoder arguments).
    """
    if checkpoint is None or str(checkpoint) == "":
        return model
    ckpt = load_checkpoint(checkpoint, map_location)
    _check_encoder(checkpoint, ckpt.get("run_info") or {}, encoder)
    state = _model_state(ckpt, checkpoint)
    try:
        model.load_encoder(state)
    except CryoError as err:  # a damaged checkpoint (data) or an encoder that does not match it (configuration)
        raise type(err)(checkpoint, err.problem, err.fix) from None
    except RuntimeError as err:  # same names, other shapes (e.g. another width of the encoder)
        first = str(err).strip().splitlines()[-1].strip()
        raise ConfigError(checkpoint, f"encoder weights do not fit ({first})",
                          "build the encoder with the arguments used for pretraining") from None
    return model


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str) -> Path | None:
    """The epoch checkpoint ``<prefix>_checkpoint_epoch=<n>.pt`` with the largest ``n``, or None.

    Temporary files of :func:`~cryomonai.io.atomic_write` (``.<name>.<hex>.tmp``, left by a run
    killed while :class:`AtomicCheckpointSaver` wrote) never match the name.
    """
    pattern = re.compile(rf"{re.escape(prefix)}_checkpoint_epoch=(\d+)\.pt")
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("*.pt") if (m := pattern.fullmatch(p.name))]
    return max(found)[1] if found else None


def resume_handlers(
    resume: bool | str | None,
    ckpt_dir: str | os.PathLike,
    prefix: str,
    load_dict: dict[str, Any],
    map_location: Any = None,
) -> list[CheckpointLoader]:
    """``[CheckpointLoader]`` restoring a run (weights, buffers, optimizer, scheduler, epoch), or ``[]``.

    Args:
        resume: false/None/"" (fresh run), true/"latest" (the newest epoch checkpoint of
            ``prefix`` in ``ckpt_dir``) or the path of a checkpoint. Strings ``"true"``/``"false"``
            from the command line count as booleans.
        ckpt_dir: where ``CheckpointSaver`` writes.
        prefix: its ``file_prefix`` (``"pretrain"``, ``"finetune"``).
        load_dict: what to restore, the ``save_dict`` of the saver.
        map_location: device for the loaded tensors.

    Raises:
        ConfigError: resuming was asked for but there is no checkpoint.
    """
    word = str(resume).strip().lower()
    if resume is None or resume is False or word in ("", "false", "0", "no", "none"):
        return []
    if resume is True or word in ("true", "1", "yes", "latest"):
        path = latest_checkpoint(ckpt_dir, prefix)
        if path is None:
            raise ConfigError(ckpt_dir, f"no {prefix}_checkpoint_epoch=*.pt to resume from",
                              "run without --resume, or point --ckpt_dir at the run to continue")
    else:
        path = Path(str(resume))
        if not path.is_file():
            raise CryoDataError(path, "checkpoint to resume from not found",
                                "give an existing checkpoint, or --resume true")
    saved = set(load_checkpoint(path))
    missing = sorted(set(load_dict) - saved)
    if missing == ["rng"]:  # written before RNGState was saved: resume, but not bit-exactly
        logging.getLogger(__name__).warning(
            "%s has no saved seeds ('rng'); resuming, but the rest of the run will not repeat an "
            "uninterrupted one exactly", path)
        load_dict = {k: v for k, v in load_dict.items() if k != "rng"}
    elif missing:
        raise CryoDataError(path, f"lacks {missing} (saved: {sorted(saved)})",
                            "resume from a checkpoint of the same run id and bundle version, or start afresh")
    return [CheckpointLoader(load_path=str(path), load_dict=load_dict, map_location=map_location)]


class _AtomicDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` writing through :func:`~cryomonai.io.atomic_write`, removing late.

    Ignite's ``Checkpoint`` calls ``remove(old)`` and then saves the new file; here the removal
    waits until the new file is complete. ``filename`` fixes the name, as MONAI's saver does for
    its final and best-metric checkpoints (the file is then simply replaced).
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=False)  # atomicity is ours
        self.filename = filename
        self._stale: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        name = self.filename or filename
        if idist.get_rank() == self.save_on_rank:
            buffer = io.BytesIO()  # serialised first: a full disk's error can say how much the file needs
            torch.save(checkpoint, buffer, **self.kwargs)
            data = buffer.getbuffer()
            with atomic_write(self.dirname / name, size=data.nbytes) as f:
                f.write(data)
            for old in self._stale:
                if old != name:
                    (self.dirname / old).unlink(missing_ok=True)
        self._stale.clear()

    def remove(self, filename: str) -> None:
        self._stale.append(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's :class:`~monai.handlers.CheckpointSaver` (same arguments, files and names), never torn.

    Every file (epoch/iteration checkpoints, ``final_filename``, ``key_metric_filename``) is
    written to a hidden temporary file, ``fsync``-ed and renamed over the target, so a run killed
    at any moment leaves the previous file or the new one; with ``n_saved=1`` the previous
    checkpoint is deleted only once the next one is complete, so there always is one to resume
    from. In a bundle: ``"checkpoint_saver": {"_target_": "cryomonai.engines.AtomicCheckpointSaver", …}``.

    Args:
        save_dir: the folder of the checkpoints.
        save_dict: the objects to save (``state_dict`` of each).
        kwargs: the other arguments of MONAI's ``CheckpointSaver``.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, **kwargs)
        for name in ("_final_checkpoint", "_key_metric_checkpoint", "_interval_checkpoint"):  # MONAI's three
            checkpoint = getattr(self, name)
            if checkpoint is not None:
                checkpoint.save_handler = _AtomicDiskSaver(save_dir, checkpoint.save_handler.filename)
        self.lock = FolderLock(save_dir)

    def attach(self, engine: Engine) -> None:
        """Take the checkpoint folder's lock (:class:`~cryomonai.io.lock.FolderLock`: a second run
        writing there fails at once, naming this run's pid), then attach MONAI's saver; the lock is
        given back when the run completes (after the final checkpoint) or the process ends."""
        self.lock.acquire()
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, lambda _: self.lock.release())
