"""Defaults live once: a method or encoder overlay holds only what differs from what it configures.

Every key of ``configs/methods/<m>.json`` and ``configs/encoders/<e>.json`` is checked against the
Python default it overrides — ``ssl_method#X`` against ``METHODS[m].__init__``'s default of ``X``,
``network_def#X`` against ``ENCODERS[e]``'s, any other key against the bundle JSON it overrides
(``common.json`` + ``pretrain.json``) — and fails when it restates it, or names a key that does not
exist there (a typo would otherwise be silently ignored by ``monai.bundle``).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from cryomonai.networks import ENCODERS
from cryomonai.pipeline import bundle_dir
from cryomonai.ssl import METHODS, SSLMethod

CONFIGS = bundle_dir() / "configs"
_MISSING = object()


def _base() -> dict:
    base = {}
    for name in ("common.json", "pretrain.json"):
        base.update(json.loads((CONFIGS / name).read_text()))
    return base


def _defaults(factory) -> dict:
    """The keyword defaults of ``factory``; a method's ``**head`` adds :meth:`SSLMethod.projection_head`'s
    (where they are written), under the method's own (MoCo's ``head_norm``)."""
    params = inspect.signature(factory).parameters
    defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    if "head" in params and params["head"].kind is inspect.Parameter.VAR_KEYWORD:
        defaults = {**_defaults(SSLMethod.projection_head), **defaults}
    return defaults


def _overlays():
    for kind, registry, prefix, name_key in (("methods", METHODS, "ssl_method#", "method"),
                                              ("encoders", ENCODERS, "network_def#", "encoder")):
        for path in sorted((CONFIGS / kind).glob("*.json")):
            yield pytest.param(path, registry, prefix, name_key, id=f"{kind}/{path.stem}")


def _problems(path: Path, registry: dict, prefix: str, name_key: str) -> list[str]:
    overlay, base = json.loads(path.read_text()), _base()
    if overlay.get(name_key) != path.stem or path.stem not in registry:
        return [f"'{name_key}' must be {path.stem!r}, a registered name"]
    defaults = _defaults(registry[path.stem])
    problems = []
    for key, value in overlay.items():
        if key == name_key:
            continue
        if key.startswith(prefix):
            default = defaults.get(key[len(prefix):], _MISSING)
            where = f"{registry[path.stem].__name__}()"
        else:
            default, where = base.get(key, _MISSING), "common.json/pretrain.json"
        if default is _MISSING:
            problems.append(f"{key}: unknown in {where}")
        elif value == default or (isinstance(default, tuple) and value == list(default)):
            problems.append(f"{key}: {value!r} restates the default of {where}")
    return problems


@pytest.mark.parametrize("path, registry, prefix, name_key", list(_overlays()))
def test_overlay_holds_only_what_differs_from_its_defaults(path, registry, prefix, name_key):
    assert _problems(path, registry, prefix, name_key) == []


def test_the_check_catches_a_restated_default_and_a_typo(tmp_path):
    bad = tmp_path / "moco.json"
    bad.write_text(json.dumps({"method": "moco", "ssl_method#queue_size": 128, "ssl_method#queue_sise": 64, "lr": 1e-4}))
    problems = _problems(bad, METHODS, "ssl_method#", "method")
    assert len(problems) == 3 and "restates" in problems[0] and "unknown" in problems[1] and "restates" in problems[2]
    head = tmp_path / "simclr.json"  # the head's keys reach projection_head through **head: checked there
    head.write_text(json.dumps({"method": "simclr", "ssl_method#proj_dim": 128, "ssl_method#proj_dm": 64,
                                "ssl_method#head_norm": None}))
    problems = _problems(head, METHODS, "ssl_method#", "method")
    assert len(problems) == 2 and "restates" in problems[0] and "unknown" in problems[1]
    moco = tmp_path / "moco.json"  # MoCo's own head_norm default (None) wins over the head's ("batch")
    moco.write_text(json.dumps({"method": "moco", "ssl_method#head_norm": "batch", "ssl_method#proj_dim": 64}))
    assert _problems(moco, METHODS, "ssl_method#", "method") == []


def test_every_registered_method_and_encoder_has_an_overlay():
    assert {p.stem for p in (CONFIGS / "methods").glob("*.json")} == set(METHODS)
    assert {p.stem for p in (CONFIGS / "encoders").glob("*.json")} == set(ENCODERS)


def _readme_commands() -> list[tuple[str, str, list[str]]]:
    """``(file:line, run id, config files)`` of every ``monai.bundle run`` command in the READMEs and docs pages."""
    import re

    found = []
    docs = sorted((Path(__file__).resolve().parents[1] / "docs").rglob("*.md"))  # the docs site's pages too
    for readme in (bundle_dir().parents[1] / "README.md", bundle_dir() / "docs" / "README.md", *docs):
        for n, line in enumerate(readme.read_text().splitlines(), 1):
            match = re.search(r"monai\.bundle run (\w+)\s+--config_file \"\[(.*?)\]\"", line)
            if match:
                files = [f.strip(" '").replace("$B/", "") for f in match.group(2).split(",")]
                found.append((f"{readme.name}:{n}", match.group(1), files))
    return found


def test_readme_commands_compose_the_run_ids_config_files():
    """The READMEs' ``monai.bundle run <id> --config_file [...]`` lists are ``RUN_CONFIGS[id]`` (the one
    place the CLI, the grid and the benchmark take them from), plus method/encoder/multi-GPU/tomogram overlays."""
    from cryomonai.pipeline import RUN_CONFIGS

    commands = _readme_commands()
    assert len(commands) >= 10
    for where, run_id, files in commands:
        base = list(RUN_CONFIGS[run_id])
        assert files[: len(base)] == base, f"{where}: {files} does not start with RUN_CONFIGS[{run_id!r}] = {base}"
        extra = files[len(base):]
        assert all(f.startswith(("methods/", "encoders/", "multi_gpu_", "pretrain_tomograms")) for f in extra), \
            f"{where}: {extra}"
        assert all((CONFIGS / f).is_file() for f in files), where
