"""Rules every grid preset keeps (issue 26): the step-budget rule, the frozen ``confirm``, a fair ``paper``."""

import json
import math
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cryomonai.data.splits import label_subset, stratified_split
from cryomonai.experiment.budget import budget_fraction, resolve_min_steps, step_rule
from cryomonai.experiment.preset import load_preset, preset_dir
from cryomonai.io import ParticleTable, write_particle_table

PRESETS = sorted(p.stem for p in preset_dir().glob("*.json"))
SIMULATED = [n for n in PRESETS if n != "real"]


def _rule_by_hand(preset) -> int:
    """The rule from the preset's own numbers: split each class as the simulator does, take the labelled
    subset at the budget fraction as the bundle does, and count the batches of ``finetune.epochs`` epochs."""
    values = set()
    for ds in preset.datasets:
        n_classes = len(ds.get("classes") or range(10))
        labels = np.repeat(np.arange(n_classes), ds["n_per_class"])
        split = stratified_split(labels, ds.get("split_fractions", (0.6, 0.2, 0.2)), seed=0)
        train = labels[split == "train"]
        fractions = sorted(preset.selection_cells())
        fraction = next((f for f in fractions if f >= 0.1), fractions[-1])
        labelled = int(label_subset(train, fraction, seed=0).sum())
        batch = preset.finetune.get("batch_size", preset.common.get("batch_size", 16))
        values.add(math.ceil(labelled / batch) * preset.finetune["epochs"])
    assert len(values) == 1, "the datasets of a preset share one step budget"
    return values.pop()


@pytest.mark.parametrize("name", SIMULATED)
def test_every_preset_has_the_step_budget_rule(name):
    """``finetune.min_steps`` is the optimizer steps of the preset's budget cell (its smallest selection
    fraction >= 10 %): labelled training subtomograms there / batch size, rounded up, x epochs.

    For ``cpu`` (600 training subtomograms, batch 16, 60 epochs, selection at 10 %) that is 60 labels =
    4 batches x 60 = 240 steps, the 10 % cell's own; its 25 % cells take 10 x 60 = 600 >= 240. So the
    rule changes no cell of the main job (every ``epoch_scale`` stays 1, asserted below): its committed
    results stand. ``cpu_full`` inherits 240 (its 100 % cells take more), ``ssl_methods`` (5 epochs)
    gets 20, ``paper`` 2,350 (75 labels per class at 25 %).
    """
    preset = load_preset(name)
    assert "min_steps" in preset.finetune
    assert preset.finetune["min_steps"] == _rule_by_hand(preset) == step_rule(preset)


def test_the_rule_leaves_the_main_job_as_it_was():
    from cryomonai.engines.finetune import epoch_scale

    cpu = load_preset("cpu")
    assert cpu.finetune["min_steps"] == 240 and load_preset("label_efficiency").finetune["min_steps"] == 600
    for fraction in cpu.label_fractions:  # 60 and 150 labels: 4 and 10 batches an epoch
        batches = math.ceil(10 * math.ceil(fraction * 60) / 16)
        assert epoch_scale(cpu.finetune["epochs"], cpu.finetune["min_steps"], batches) == 1
    assert budget_fraction([0.01, 0.1, 1.0]) == 0.1 and budget_fraction([0.25, 1.0]) == 0.25
    assert budget_fraction([0.01, 0.05]) == 0.05


def test_a_table_preset_resolves_the_rule_on_its_table(tmp_path):
    """``real`` cannot know its sizes: ``"min_steps": "rule"`` is counted on the table's training split."""
    raw = json.loads((preset_dir() / "real.json").read_text())
    assert raw["finetune"]["min_steps"] == "rule"
    df = pd.DataFrame({"path": [f"v{i}.mrc" for i in range(140)], "label": ["a"] * 100 + ["b"] * 40,
                       "split": (["train"] * 70 + ["test"] * 30) + (["train"] * 28 + ["val"] * 12)})
    table = write_particle_table(ParticleTable(df, ["a", "b"]), tmp_path / "t.star")
    preset = load_preset("real", dataset_table=table)
    overrides = preset.recipe_overrides()["sgd_5e-4"]
    # budget fraction 25 %: ceil(17.5) + ceil(7) = 25 labels = 2 batches of 16, x 50 epochs
    assert resolve_min_steps(preset, overrides, table)["min_steps"] == 100
    assert resolve_min_steps(preset, {"min_steps": 7}, table) == {"min_steps": 7}


# ---- the confirm preset (issue 26 items 2, 4, 5) ----

CONFIRM = ("confirm", "confirm_dev")


def _seeds_elsewhere() -> str:
    """Every tracked file except the confirm presets, this test, the presets page and the records of the confirm
    runs themselves (``docs/records/confirm*/``) — where a confirmation seed must not appear."""
    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    skip = {"bundles/cryo_ssl/configs/grid/confirm.json", "bundles/cryo_ssl/configs/grid/confirm_dev.json",
            "tests/test_preset_rules.py", "docs/explanation/presets.md"}
    text = []
    for f in files:
        if f not in skip and not f.startswith("docs/records/confirm") and f.endswith((".py", ".json", ".md", ".cfg", ".toml", ".yaml", ".yml", ".sh", ".txt")):
            text.append((root / f).read_text(errors="ignore"))
    return "\n".join(text)


def test_confirm_presets_load_with_fresh_seeds_and_the_sizes():
    confirm, dev = load_preset("confirm"), load_preset("confirm_dev")
    seeds = [ds["seed"] for ds in confirm.datasets]
    assert len(set(seeds)) == 4 and dev.datasets[0]["seed"] not in seeds
    elsewhere = _seeds_elsewhere()
    for seed in [*seeds, dev.datasets[0]["seed"]]:
        assert not re.search(rf"\b{seed}\b", elsewhere), f"seed {seed} is used elsewhere: not fresh"
    assert sorted(str(ds["snr"]) for ds in confirm.datasets) == ["0.03", "0.05", "0.05", "inf"]
    for ds in confirm.datasets + dev.datasets:
        labels = np.repeat(np.arange(10), ds["n_per_class"])
        split = stratified_split(labels, ds["split_fractions"])
        assert (split == "train").sum() >= 2000 and (split == "test").sum() >= 1000
        assert ds["noise_model"] == "aitom" and ds["context_control"] is True
        assert ds["box"] == 16 and ds["binning"] == 2
        assert not {"neighbour_gap", "neighbour_contact", "n_neighbours"} & set(ds)  # the shortcut-free defaults
    for preset in (confirm, dev):
        assert preset.methods == ["random", "simclr", "moco", "swav", "vicreg"]
        assert preset.label_fractions == [0.01, 0.1, 1.0] and preset.repeats == 3 and preset.workers == 2
        assert preset.selection_cells() == preset.label_fractions  # recipes scored at every fraction
        assert preset.choose_per_fraction is True  # and chosen per fraction on validation
        assert preset.extend_edges == {"factor": 3, "max_steps": 2}  # a winner at the edge widens the space
        recipes = preset.recipe_overrides()
        assert any(r.get("lp_epochs", 0) > 0 for r in recipes.values())  # LP-FT
        assert any(0 < r.get("layer_decay", 1.0) < 1.0 for r in recipes.values())  # layer-wise decay
        assert any(r.get("encoder_lr", r["lr"]) < r["lr"] for r in recipes.values())  # a lower encoder rate
        plain = sorted(r["lr"] for r in recipes.values() if set(r) == set(preset.finetune) | {"lr"})
        assert len(plain) >= 3  # plain Adam at three rates, the default in the middle
        assert plain[0] < preset.finetune["lr"] < plain[-1]
        assert "finetune_param_groups" in preset.finetune["optimizer"]["params"]  # layer_decay reaches the optimizer
    differ = {k for k in confirm.__dataclass_fields__ if getattr(confirm, k) != getattr(dev, k)}
    assert differ == {"name", "datasets"}  # the twin is the same protocol on development data


def test_the_paper_preset_is_table_1_under_the_fair_protocol():
    """``paper`` is Gupta et al.'s Table 1 at its sizes (10 classes x 500 at 32^3, AITom's nominal SNR inf / 0.05 /
    0.03, 25-100 % labels x 5 repeats, 200 pretraining epochs), under issue 26's rules: the shortcut-free crowding
    with the context control, five arms, and ``real``'s recipe space (the paper's SGD, Adam at two rates, a start
    at the probe with a lower encoder rate, LP-FT) chosen per arm and fraction on validation, widened at an edge."""
    paper = load_preset("paper")
    real = SimpleNamespace(**json.loads((preset_dir() / "real.json").read_text()))  # without a table, as written
    assert [str(ds["snr"]) for ds in paper.datasets] == ["inf", "0.05", "0.03"]
    for ds in paper.datasets:
        assert ds["noise_model"] == "aitom" and ds["context_control"] is True
        assert ds["box"] == 32 and ds.get("binning", 1) == 1 and ds["n_per_class"] == 500
        assert not {"neighbour_gap", "neighbour_contact", "n_neighbours"} & set(ds)  # the shortcut-free defaults
    assert paper.label_fractions == [0.25, 0.5, 0.75, 1.0] and paper.repeats == 5 and paper.pretrain["epochs"] == 200
    assert paper.methods == real.methods == ["random", "simclr", "moco", "swav", "vicreg"]
    assert paper.encoder == real.encoder and paper.recipes == real.recipes and paper.extend_edges == real.extend_edges
    assert paper.selection_cells() == paper.label_fractions and paper.choose_per_fraction is True
    recipes = paper.recipe_overrides()
    assert recipes["sgd_5e-4"]["optimizer"]["_target_"] == "torch.optim.SGD" and recipes["sgd_5e-4"]["lr"] == 5e-4
    assert any(r.get("lp_epochs", 0) > 0 for r in recipes.values())  # LP-FT
    assert any(r.get("encoder_lr", r["lr"]) < r["lr"] for r in recipes.values())  # a lower encoder rate
    assert paper.finetune.get("precise_bn", True) is True
    assert {k: v for k, v in paper.finetune.items() if k not in ("min_steps", "precise_bn")} == \
        {k: v for k, v in real.finetune.items() if k != "min_steps"}  # Table 2's fine-tuning, its own step count


def test_confirm_description_is_one_short_line():
    for name in CONFIRM:
        text = json.loads((preset_dir() / f"{name}.json").read_text())["description"]
        assert "\n" not in text and len(text) <= 200


@pytest.mark.slow
def test_confirm_protocol_runs_end_to_end_on_a_tiny_dataset(tmp_path):
    """The confirm protocol itself (its AITom noise, context control, recipe space with layer decay and
    LP-FT, step rule, workers) on a tiny fresh-seeded dataset, shortened: every recipe trains, one is
    chosen on validation, and the cells carry their context-only accuracy."""
    import dataclasses

    from cryomonai.experiment.grid import run_grid

    confirm = load_preset("confirm")
    tiny = {**confirm.datasets[0], "name": "tiny", "n_per_class": 6, "box": 8, "classes": ["1bxn", "1qvr", "3cf3"],
            "split_fractions": [0.5, 0.25, 0.25], "workers": 0}
    preset = dataclasses.replace(
        confirm, datasets=[tiny], methods=["random", "vicreg"], label_fractions=[0.5, 1.0], selection_fractions=None,
        repeats=1, readouts=False, report={"gradcam_examples": 2}, pretrain={**confirm.pretrain, "epochs": 1, "batch_size": 4},
        recipes={k: {**v, "lp_epochs": min(v.get("lp_epochs", 0), 1)} for k, v in confirm.recipes.items()},
        finetune={**confirm.finetune, "epochs": 1, "min_steps": 2, "val_interval": 1, "save_interval": 1})
    results = run_grid(preset, tmp_path / "grid", report=True, progress=False)
    assert len(results) == 4 and results["context_accuracy"].between(0, 1).all()
    selection = pd.read_csv(tmp_path / "grid" / "selection.csv")
    declared = selection[selection["recipe"].isin(list(confirm.recipes))]
    assert set(declared["recipe"]) == set(confirm.recipes) and len(declared) == 2 * 2 * len(confirm.recipes)
    # a winner at the edge of the space (extend_edges): the added recipes are recorded before they train
    from cryomonai.experiment.edges import read_extensions

    added = {e.recipe for e in read_extensions(tmp_path / "grid" / "recipes_extended.json")}
    assert set(selection["recipe"]) - set(confirm.recipes) == added
    assert "## Context control" in (tmp_path / "grid" / "table.md").read_text()
