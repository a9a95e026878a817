"""Drive the ``cryo_ssl`` MONAI bundle from Python: locate its configs, run a run id, read metrics.

This is not a second training loop: every step is ``monai.bundle`` running the bundle's JSON,
exactly what ``python -m monai.bundle run <id> --config_file …`` does, with overrides as keys.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
from difflib import get_close_matches
from importlib import resources
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

from monai.bundle import ConfigParser, ConfigWorkflow, ReferenceResolver
from monai.bundle.utils import ID_SEP_KEY

from cryomonai.errors import ConfigError, CryoDataError

__all__ = ["RUN_ENGINES", "bundle_args", "bundle_command", "bundle_configs", "bundle_dir", "bundle_roots", "check_command_line",
           "check_overrides", "run_bundle"]

log = logging.getLogger(__name__)

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


#: the bundles of a checkout (``bundles/`` beside the package), and where a wheel carries them (setup.py's build_py)
CHECKOUT_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
PACKAGED_BUNDLES = "_bundles"


def bundle_roots() -> list[tuple[str, Path]]:
    """Where bundles are looked for, in order: ``$CRYOMONAI_BUNDLES``; the checkout's ``bundles/`` (when
    cryomonai runs from a checkout, as after ``tools/setup_env.sh``); the copy installed with the package
    (``cryomonai/_bundles``, a wheel's package data). Each as (what it is, folder)."""
    roots = []
    if os.environ.get("CRYOMONAI_BUNDLES"):
        roots.append(("$CRYOMONAI_BUNDLES", Path(os.environ["CRYOMONAI_BUNDLES"])))
    roots.append(("the checkout", CHECKOUT_BUNDLES))
    roots.append(("the installed package", Path(str(resources.files("cryomonai").joinpath(PACKAGED_BUNDLES)))))
    return roots


def bundle_dir(name: str = "cryo_ssl") -> Path:
    """The bundle folder ``<root>/<name>`` of the first root of :func:`bundle_roots` that has it.

    ``$CRYOMONAI_BUNDLES``, when set, is the only place looked at (a wrong value is an error, not a
    silent fall-back to another copy)."""
    roots = bundle_roots()
    if os.environ.get("CRYOMONAI_BUNDLES"):
        roots = roots[:1]
    for _, root in roots:
        if (root / name / "configs" / "common.json").is_file():
            return root / name
    where = ", ".join(f"{what} ({root})" for what, root in roots)
    raise ConfigError(f"bundle '{name}'", f"not found in {where}",
                      "set CRYOMONAI_BUNDLES to a folder holding it, or reinstall cryomonai")


def _overlay(cfg: Path, kind: str, name: str) -> Path:
    """``configs/<kind>/<name>.json`` (kind ``methods`` or ``encoders``), or a ConfigError naming the choices."""
    path = cfg / kind / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(f.stem for f in (cfg / kind).glob("*.json")))
        raise ConfigError(f"--{kind[:-1]} {name}", f"the bundle has no {kind[:-1]} '{name}'", f"use one of: {known}")
    return path


def bundle_configs(run_id: str, method: str | None = None, encoder: str | None = None, bundle: Path | None = None,
                   distributed: bool = False) -> list[str]:
    """The config files for ``run_id`` plus the method/encoder overlays, as the CLI composes them;
    ``distributed``: with ``multi_gpu_<run_id>.json`` (DDP, one process per rank). An unknown run id,
    method or encoder is a :class:`~cryomonai.errors.ConfigError`."""
    if run_id not in RUN_CONFIGS:
        raise ConfigError(f"run id '{run_id}'", "is not a run id of the bundle", f"use one of: {', '.join(RUN_CONFIGS)}")
    cfg = (bundle or bundle_dir()) / "configs"
    files = [cfg / f for f in RUN_CONFIGS[run_id]]
    if distributed:
        files.append(cfg / f"multi_gpu_{run_id}.json")
        if not files[-1].is_file():
            raise ConfigError("--distributed", f"run id '{run_id}' has no multi-GPU overlay", "run it in one process")
    if method and run_id == "pretrain":
        files.append(_overlay(cfg, "methods", method))
    if encoder:
        files.append(_overlay(cfg, "encoders", encoder))
    for f in files:
        if not f.is_file():
            raise CryoDataError(f, "config file of the bundle missing", "reinstall cryomonai, or check CRYOMONAI_BUNDLES")
    return [str(f) for f in files]


def bundle_args(run_id: str, method: str | None = None, encoder: str | None = None, distributed: bool = False,
                **overrides: Any) -> dict[str, Any]:
    """The arguments of ``monai.bundle`` for ``run_id``: ``config_file`` (:func:`bundle_configs`),
    ``meta_file``, ``logging_file`` and the bundle keys (``bundle_root``, ``method``, ``encoder``, then
    ``overrides``). What :func:`run_bundle` runs and :func:`bundle_command` prints."""
    bundle = bundle_dir()
    keys = {"bundle_root": str(bundle), **({"method": method} if method else {}),
            **({"encoder": encoder} if encoder else {}), **overrides}
    return {"config_file": bundle_configs(run_id, method, encoder, bundle, distributed),
            "meta_file": str(bundle / "configs" / "metadata.json"),
            "logging_file": str(bundle / "configs" / "logging.conf"), **keys}


def check_overrides(run_id: str, config_file: list[str], overrides: dict[str, Any]) -> None:
    """A ConfigError for an override that is no key of ``run_id``'s configs (a typo such as ``epoch``).

    ``a#b#c`` (or ``a::b::c``) may be new when ``a#b`` is an object (``_target_``: a constructor argument, e.g.
    ``ssl_method#queue_size``) or holds new keys anyway; a new top-level key is refused."""
    parser = ConfigParser()
    parser.read_config(config_file)
    for key in overrides:
        if key in parser:
            continue
        if len(key) == 1:  # python-fire passes `-v` of a command with **overrides here, not as --voxel_size
            raise ConfigError(f"-{key}", "short flags are not read by this command",
                              "write the long flag (`cryomonai <command> --help` lists them, e.g. --voxel_size)")
        norm = ReferenceResolver.normalize_id(key)  # `a#b` or MONAI's `a::b`
        parent = norm.rpartition(ID_SEP_KEY)[0]
        if parent and parent in parser and isinstance(parser[parent], dict):
            continue
        top = [k for k in parser.get() if isinstance(k, str)]
        near = get_close_matches(norm.split(ID_SEP_KEY)[0], top, n=3)
        hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
        raise ConfigError(f"--{key}", f"is not a key of the bundle's '{run_id}' configs",
                          f"{hint}the keys are in {Path(config_file[0]).parent}/*.json")


def _runner_args(tracking: Any) -> set[str]:
    """The names ``python -m monai.bundle run`` takes for itself, not as bundle keys: ``run``'s parameters,
    ``create_workflow``'s and ``ConfigWorkflow``'s (``workflow_type``, ``properties_path`` …), and with
    ``--tracking`` the keys its settings patch into the config (``experiment_name``, ``run_name`` …)."""
    import inspect

    from monai.bundle import scripts
    from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

    names = {"workflow_name", "args_file"}
    for fn in (scripts.run, ConfigWorkflow.__init__):
        names |= {n for n, p in inspect.signature(fn).parameters.items() if p.kind is not p.VAR_KEYWORD}
    if tracking:
        names |= set(DEFAULT_MLFLOW_SETTINGS["configs"])
        if isinstance(tracking, dict):
            names |= set(tracking.get("configs", {}))
    return names - {"self"}


def _command_line_keys(args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments and the positional ones that python-fire makes of ``run``'s command line
    ``args``: fire's own parser (``--key value``, ``--key=value``, ``--flag``, ``--noflag``, ``-k``, hyphens as
    underscores, fire's flags after a final ``--`` left out), values parsed as fire parses them."""
    from fire import core, inspectutils, parser  # MONAI's bundle command line is python-fire's
    from monai.bundle import scripts

    args, _ = parser.SeparateFlagArgs(list(args))
    kwargs, _, positional = core._ParseKeywordArgs(args, inspectutils.GetFullArgSpec(scripts.run))
    return {k: parser.DefaultParseValue(v) for k, v in kwargs.items()}, positional


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Under ``python -m monai.bundle run <id> --config_file … --key value`` (``argv``, default
    ``sys.argv``), :func:`check_overrides` on its bundle keys: MONAI's runner takes any key, so a typo
    (``--epoch 5``) would run on with the default. The command line is read by python-fire's own parser,
    as MONAI's runner reads it; keys from ``--args_file`` are checked too. Other command lines are not this
    check's (the ``cryomonai`` command checks its own keys).

    The bundle's ``initialize`` calls it.

    Raises:
        ConfigError: a key that is none of the run id's configs.
    """
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or Path(argv[0]).parts[-2:] != ("bundle", "__main__.py") or argv[1] != "run":
        return
    try:
        keys, positional = _command_line_keys(argv[2:])
    except (AttributeError, ImportError, TypeError) as err:  # a python-fire whose parser moved: say so, run on
        log.warning("the bundle's command line keys are not checked (python-fire's parser: %s)", err)
        return
    if keys.get("args_file"):
        keys = {**ConfigParser.load_config_file(str(keys["args_file"])), **keys}
    run_id = keys.get("run_id") or (positional[0] if positional else "run")
    files = keys.get("config_file") or (positional[4] if len(positional) > 4 else None)
    if not files:
        return  # MONAI itself refuses a run without configs
    files = [str(f) for f in files] if isinstance(files, (list, tuple)) else [str(files)]
    runner = _runner_args(keys.get("tracking"))
    check_overrides(str(run_id), files, {k: v for k, v in keys.items() if k not in runner})


def bundle_command(run_id: str, **args: Any) -> str:
    """The ``python -m monai.bundle run`` command line of :func:`bundle_args`' ``args``, one string."""
    def text(v: Any) -> str:
        return shlex.quote(v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else repr(v))

    files = '"[' + ",".join(f"'{f}'" for f in args.pop("config_file")) + ']"'  # as the READMEs write it
    return " ".join(["python -m monai.bundle run", run_id, "--config_file", files,
                     *(f"--{k} {text(v)}" for k, v in args.items())])


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
    wf = ConfigWorkflow(workflow_type=None, run_id=run_id, **bundle_args(run_id, method, encoder, distributed, **overrides))
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
