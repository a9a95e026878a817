"""Engines: contrastive pretraining and fine-tuning on MONAI's Ignite workflows.

Nothing here is a new engine: pretraining is MONAI's ``SupervisedTrainer`` with
:func:`ssl_iteration` as its step, fine-tuning is the plain ``SupervisedTrainer`` /
``SupervisedEvaluator`` pair. This package holds the pieces the bundle (``bundles/cryo_ssl``) names:

* :mod:`~cryomonai.engines.ssl_step` — :class:`SSLStep`, :func:`ssl_iteration`, :class:`SSLPrepareBatch`;
* :mod:`~cryomonai.engines.checkpoints` — :class:`RunInfo`, :func:`load_pretrained_encoder`,
  :func:`read_run_info`, :func:`check_classes`, :func:`resume_handlers`, :class:`AtomicCheckpointSaver`;
* :mod:`~cryomonai.engines.distributed` — :func:`release_ddp` (DDP freed before its process group);
* :mod:`~cryomonai.engines.finetune` — :class:`SupervisedPrepareBatch` (fine-tuning's augmented
  view made on the training device, the bundle's ``augment_on_device``), :func:`epoch_scale` (the
  bundle's ``min_steps``);
* :mod:`~cryomonai.engines.recipes` — fine-tuning that keeps pretrained features:
  :func:`finetune_param_groups` (layer-wise lr decay, the bundle's ``layer_decay``),
  :class:`LinearProbeFirst` and :func:`finetune_lr_scheduler` (LP-FT, the bundle's ``lp_epochs``);
* :mod:`~cryomonai.engines.probe_start` — :class:`ProbeStart`: LP-FT whose LP is the readouts' logistic-
  regression probe, validated at the start (the bundle's ``lp_probe``);
* :mod:`~cryomonai.engines.precise_bn` — :class:`PreciseBN`: batch-norm statistics recomputed on the
  labelled training volumes, un-augmented, before each validation pass (the bundle's ``precise_bn``);
* :mod:`~cryomonai.engines.handlers` — TensorBoard view slices and learning rate, a progress bar;
* :mod:`~cryomonai.engines.perf` — speed switches: :func:`prepare_network` (memory format, compile),
  :class:`PrepareBatchMemoryFormat`, :class:`AutocastInferer`, :class:`TrackMeta`;
* :mod:`~cryomonai.engines.busy_cores` — :func:`warn_busy_cores`: one warning when a CPU run's threads
  would share cores that other work keeps busy (the bundle's ``initialize``);
* :mod:`~cryomonai.engines.predictions` — :class:`PredictionsWriter` (predictions CSV),
  :class:`ParticlePredictionsWriter` (predictions STAR/CSV and features of a particle table);
* :mod:`~cryomonai.engines.rng` — :class:`RNGState` (reseeds each epoch, so a resume is exact);
* :mod:`~cryomonai.engines.weights` — :func:`weights_file` (a checkpoint path or the name of the
  bundle's shipped weights), :func:`model_input` (the boxes it expects), :func:`compact_checkpoint`.
"""

from cryomonai.engines.busy_cores import warn_busy_cores
from cryomonai.engines.checkpoints import (
    AtomicCheckpointSaver,
    RunInfo,
    check_classes,
    latest_checkpoint,
    load_checkpoint,
    load_pretrained_encoder,
    read_run_info,
    resume_handlers,
)
from cryomonai.engines.distributed import release_ddp
from cryomonai.engines.finetune import SupervisedPrepareBatch, epoch_scale
from cryomonai.engines.network import build_network, saved_encoder_args
from cryomonai.engines.handlers import LearningRateWriter, ProgressBarHandler, ViewSlicesHandler, central_slices
from cryomonai.engines.perf import (
    AutocastInferer,
    PrepareBatchMemoryFormat,
    TrackMeta,
    native_bf16,
    prepare_network,
    seed_run,
)
from cryomonai.engines.precise_bn import PreciseBN, has_batch_norm
from cryomonai.engines.predictions import ParticlePredictionsWriter, PredictionsWriter
from cryomonai.engines.probe_start import ProbeStart, probe_as_linear
from cryomonai.engines.recipes import (
    LinearProbeFirst,
    check_layer_decay,
    encoder_blocks,
    finetune_lr_scheduler,
    finetune_param_groups,
)
from cryomonai.engines.rng import RNGState
from cryomonai.engines.ssl_step import SSLPrepareBatch, SSLStep, check_batches, ssl_iteration, unwrap_ssl_method
from cryomonai.engines.weights import compact_checkpoint, model_input, shipped_weights, weights_file

__all__ = [
    "AutocastInferer",
    "LearningRateWriter",
    "LinearProbeFirst",
    "ParticlePredictionsWriter",
    "PrepareBatchMemoryFormat",
    "PredictionsWriter",
    "PreciseBN",
    "ProbeStart",
    "ProgressBarHandler",
    "RNGState",
    "RunInfo",
    "SSLPrepareBatch",
    "SSLStep",
    "check_batches",
    "SupervisedPrepareBatch",
    "TrackMeta",
    "epoch_scale",
    "has_batch_norm",
    "native_bf16",
    "probe_as_linear",
    "release_ddp",
    "ViewSlicesHandler",
    "build_network",
    "central_slices",
    "check_layer_decay",
    "encoder_blocks",
    "finetune_lr_scheduler",
    "finetune_param_groups",
    "compact_checkpoint",
    "latest_checkpoint",
    "check_classes",
    "load_checkpoint",
    "load_pretrained_encoder",
    "model_input",
    "prepare_network",
    "seed_run",
    "read_run_info",
    "resume_handlers",
    "saved_encoder_args",
    "shipped_weights",
    "ssl_iteration",
    "unwrap_ssl_method",
    "weights_file",
    "warn_busy_cores",
]
