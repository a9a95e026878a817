"""Drive the ``cryo_ssl`` MONAI bundle from Python: locate its configs, run a run id, read metrics.

This is not a second training loop: every step is ``monai.bundle`` running the bundle's JSON,
exactly what ``python -m monai.bundle run <id> --config_file …`` does, with overrides as keys.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from monai.bundle import ConfigWorkflow

from cryomonai.errors import CryoDataError

__all__ = ["RUN_ENGINES", "bundle_dir", "bundle_configs", "run_bundle"]

#: config files (relative to ``configs/``) composed for each run id
RUN_CONFIGS: dict[str, tuple[str, ...]] = {
    "pretrain": ("common.json", "pretrain.json"),
    "finetune": ("common.json", "finetune.json"),
    "evaluate": ("common.json", "finetune.json", "evaluate.json"),
    "inference": ("common.json", "inference.json"),
    "embed": ("common.json", "inference.json", "embed.json"),
}


#: the Ignite engine that each run id runs (its ``state.times["COMPLETED"]`` is the run's compute time)
RUN_ENGINES: dict[str, str] = {
    "pretrain": "train#trainer",
    "finetune": "train#trainer",
    "evaluate": "validate#evaluator",
    "inference": "evaluator",
    "embed": "evaluator",
}


def bundle_dir(name: str = "cryo_ssl") -> Path:
    """The bundle folder: ``$CRYOMONAI_BUNDLES/<name>`` or ``<repository>/bundles/<name>``."""
    root = Path(os.environ.get("CRYOMONAI_BUNDLES", Path(__file__).resolve().parents[1] / "bundles"))
    path = root / name
    if not (path / "configs" / "common.json").is_file():
        raise CryoDataError(path, "bundle not found", "run from a cryomonai checkout, or set CRYOMONAI_BUNDLES")
    return path


def bundle_configs(run_id: str, method: str | None = None, encoder: str | None = None, bundle: Path | None = None,
                   distributed: bool = False) -> list[str]:
    """The config files for ``run_id`` plus the method/encoder overlays, as the CLI composes them;
    ``distributed``: with ``multi_gpu_<run_id>.json`` (DDP, one process per rank)."""
    cfg = (bundle or bundle_dir()) / "configs"
    files = [cfg / f for f in RUN_CONFIGS[run_id]]
    if distributed:
        files.append(cfg / f"multi_gpu_{run_id}.json")
    if method and run_id == "pretrain":
        files.append(cfg / "methods" / f"{method}.json")
    if encoder:
        files.append(cfg / "encoders" / f"{encoder}.json")
    for f in files:
        if not f.is_file():
            raise CryoDataError(f, "config file not found", "check the method/encoder name against configs/methods|encoders")
    return [str(f) for f in files]


def run_bundle(run_id: str, method: str | None = None, encoder: str | None = None,
               on_ready: Callable[[Any], None] | None = None, distributed: bool = False, **overrides: Any) -> Any:
    """Run ``run_id`` of the bundle with ``overrides`` (bundle keys, e.g. ``epochs=2``).

    ``distributed``: this process is one rank of a DDP run (``multi_gpu_<run_id>.json``; the caller sets
    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` …). ``on_ready(wf)``, if given, is called after ``initialize`` and before the run (the parsed
    objects it touches are the ones the run uses). Returns the workflow's parsed config (``monai.bundle.ConfigWorkflow``) so callers can read
    e.g. ``wf.parser.get_parsed_content("validate#evaluator").state.metrics``. Its ``seconds``
    attribute splits the wall time: ``compute`` is the run id's engine run (:data:`RUN_ENGINES`;
    for fine-tuning it includes the validation passes), ``setup`` everything else (parsing the
    configs, building the network, opening the dataset and its cache, the final checkpoint).
    """
    t0 = time.perf_counter()
    bundle = bundle_dir()
    configs = bundle_configs(run_id, method, encoder, bundle, distributed)
    overrides.setdefault("bundle_root", str(bundle))
    if method:
        overrides.setdefault("method", method)
    if encoder:
        overrides.setdefault("encoder", encoder)
    wf = ConfigWorkflow(
        config_file=configs,
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        workflow_type=None,
        run_id=run_id,
        **overrides,
    )
    wf.initialize()
    if on_ready is not None:  # e.g. a benchmark attaching its clock to wf.parser's engine
        on_ready(wf)
    wf.run()
    wf.finalize()
    total = time.perf_counter() - t0
    engine = wf.parser.get_parsed_content(RUN_ENGINES[run_id]) if RUN_ENGINES[run_id] in wf.parser else None
    compute = float(getattr(getattr(engine, "state", None), "times", {}).get("COMPLETED") or 0.0)
    wf.seconds = {"setup": max(total - compute, 0.0), "compute": min(compute, total)}
    return wf
