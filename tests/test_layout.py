"""One run layout: checkpoint file names are spelled in ``cryomonai.layout`` and nowhere else."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import cryomonai
from cryomonai.layout import RUN_FILES, RunLayout
from cryomonai.pipeline import bundle_dir

PACKAGE = Path(cryomonai.__file__).parent


def _code_strings(path: Path) -> list[str]:
    """String constants of a module's code (docstrings left out: they may show the layout)."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_or_config_spells_a_checkpoint_name():
    names = set(RUN_FILES.values())
    offenders = [f"{p.relative_to(PACKAGE)}: {s!r}" for p in PACKAGE.rglob("*.py") if p.name != "layout.py"
                 for s in _code_strings(p) if any(n in s for n in names)]
    offenders += [f"{p.name}: {n}" for p in (bundle_dir() / "configs").rglob("*.json") for n in names if n in p.read_text()]
    assert offenders == []


def test_the_bundle_reads_the_names_from_the_layout():
    from monai.bundle import ConfigParser

    from cryomonai.pipeline import bundle_configs

    parser = ConfigParser()
    parser.read_config(bundle_configs("evaluate"))
    parser["ckpt_dir"] = "/r/models"
    assert parser.get_parsed_content("run_files") == RUN_FILES
    assert parser.get_parsed_content("checkpoint") == "/r/models/" + RUN_FILES["finetune_best"]
    assert json.loads((bundle_dir() / "configs" / "pretrain.json").read_text())["train"]["checkpoint_saver"][
        "final_filename"] == "@run_files#pretrain"


def test_run_layout_paths():
    run = RunLayout("/tmp/run")
    assert run.finetune_best == Path("/tmp/run/models") / RUN_FILES["finetune_best"]
    assert run.bundle_paths() == {"ckpt_dir": "/tmp/run/models", "output_dir": "/tmp/run/eval"}
