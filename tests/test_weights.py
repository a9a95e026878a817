"""Shipped weights taken by name (``cryomonai.engines.weights``): compact copies of bundle checkpoints,
their index and SHA-256, the one-line errors, and the bundle's ``finetune`` / ``inference`` / ``embed``
reading a name where they read a path."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import run

from cryomonai.engines import build_network, load_pretrained_encoder, read_run_info, saved_encoder_args
from cryomonai.engines.weights import SHIPPED_DIR, WEIGHTS_INDEX, compact_checkpoint, ship_weights, weights_file
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.networks import Classifier, build_encoder

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("1bxn", "3j9i", "1s3x")
SMALL = {"channels": 8, "norm": "batch"}


def _ssl_checkpoint(path: Path, seed: int = 0) -> dict:
    """A pretraining-like checkpoint: an SSL method's state (encoder + projection head + queue) and run info."""
    torch.manual_seed(seed)
    enc = build_encoder("rb3d", **SMALL)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({"head.0.weight": torch.randn(4, enc.num_features), "queue": torch.zeros(2, 8, 4)})
    ckpt = {"model": state, "optimizer": {"state": {}, "param_groups": []},
            "run_info": {"task": "pretrain", "encoder": "rb3d", "method": "simclr", "encoder_args": dict(SMALL)}}
    torch.save(ckpt, path)
    return ckpt


def _bundle_copy(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(REPO / "bundles" / "cryo_ssl" / "configs", root / "configs")
    return root


def test_compact_checkpoint_keeps_what_each_kind_needs(tmp_path: Path) -> None:
    ckpt = _ssl_checkpoint(tmp_path / "p.pt")
    enc = compact_checkpoint(ckpt, "encoder", box=16)
    assert set(enc) == {"model", "run_info"} and enc["run_info"]["box"] == 16 and enc["run_info"]["method"] == "simclr"
    assert enc["model"] and all(k.startswith("encoder.") for k in enc["model"])
    clf = compact_checkpoint(ckpt, "classifier")
    assert "head.0.weight" in clf["model"]
    with pytest.raises(CryoDataError, match="no 'encoder"):
        compact_checkpoint({"model": {"head.w": torch.ones(1)}, "run_info": {}}, "encoder")
    with pytest.raises(CryoDataError, match="no 'model' weights or no 'run_info'"):
        compact_checkpoint({"model": {}}, "encoder")


def test_ship_and_resolve_by_name(tmp_path: Path) -> None:
    root = _bundle_copy(tmp_path)
    ckpt = _ssl_checkpoint(tmp_path / "p.pt")
    path = ship_weights("tiny", tmp_path / "p.pt", "encoder", root, box=16, voxel_size=20.0)
    assert path == root / SHIPPED_DIR / "tiny.pt"
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"model", "run_info"} and all(k.startswith("encoder.") for k in saved["model"])
    index = json.loads((root / SHIPPED_DIR / WEIGHTS_INDEX).read_text())
    assert index["tiny"]["kind"] == "encoder" and index["tiny"]["encoder"] == "rb3d" and len(index["tiny"]["sha256"]) == 64
    assert index["tiny"]["encoder_args"] == SMALL  # a non-default network is in the index as well as in the file
    # a name resolves to the shipped file, and its encoder weights load exactly
    assert weights_file("tiny", root) == str(path)
    model = load_pretrained_encoder(Classifier(build_encoder("rb3d", **SMALL), 3), weights_file("tiny", root), "rb3d")
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, ckpt["model"][f"encoder.{k}"])
    # no checkpoint, an existing path, and a missing path pass through
    assert weights_file("", root) is None and weights_file(None, root) is None
    assert weights_file(tmp_path / "p.pt", root) == str(tmp_path / "p.pt")
    assert weights_file("runs/none/pretrain.pt", root) == "runs/none/pretrain.pt"


def test_weights_errors_are_one_line(tmp_path: Path) -> None:
    root = _bundle_copy(tmp_path)
    _ssl_checkpoint(tmp_path / "p.pt")
    with pytest.raises(ConfigError, match=r"neither a checkpoint file nor .* shipped names: none"):
        weights_file("simclr_typo", root)
    path = ship_weights("tiny", tmp_path / "p.pt", "encoder", root)
    with pytest.raises(ConfigError, match=r"shipped names: tiny$"):
        weights_file("simclr_typo", root)
    with pytest.raises(ConfigError, match="is a shipped encoder, and this run needs a classifier — fix: fine-tune it first"):
        weights_file("tiny", root, "classifier")
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(CryoDataError, match="SHA-256 mismatch"):
        weights_file("tiny", root)
    path.unlink()
    with pytest.raises(CryoDataError, match="are missing"):
        weights_file("tiny", root)
    (root / SHIPPED_DIR / WEIGHTS_INDEX).write_text("{")
    with pytest.raises(CryoDataError, match="not valid JSON"):
        weights_file("tiny", root)
    with pytest.raises(ValueError):
        ship_weights("../evil", tmp_path / "p.pt", "encoder", root)


@pytest.fixture(scope="module")
def shipped_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A bundle copy shipping an encoder (a real ``pretrain`` run, 2 epochs) and a classifier fine-tuned from it
    by name; a tiny simulated dataset (3 classes × 8, SNR ∞, 16³)."""
    from cryomonai.simulate.dataset import simulate_dataset

    tmp = tmp_path_factory.mktemp("shipped")
    root = _bundle_copy(tmp)
    simulate_dataset(tmp / "data", n_per_class=8, snr=math.inf, box=16, classes=CLASSES, n_neighbours=0, max_shift=1.0,
                     seed=0, workers=0, progress=False)
    common = {"bundle_root": str(root), "dataset_dir": str(tmp / "data"), "simulate": False, "progress": False, "box": 16,
              "batch_size": 8, "network_def#channels": 8, "network_def#norm": "batch"}
    cfg = [str(root / "configs" / f) for f in ("common.json", "pretrain.json")]
    run("pretrain", config_file=cfg, ckpt_dir=str(tmp / "pre"), output_dir=str(tmp / "pre_eval"), epochs=2, **common)
    ship_weights("tiny_enc", tmp / "pre" / "pretrain.pt", "encoder", root, box=16)
    return {"tmp": tmp, "root": root, "common": common}


def test_finetune_takes_shipped_weights_by_name(shipped_bundle: dict) -> None:
    tmp, root, common = shipped_bundle["tmp"], shipped_bundle["root"], shipped_bundle["common"]
    cfg = [str(root / "configs" / f) for f in ("common.json", "finetune.json")]
    # a frozen encoder trained for one epoch keeps exactly the shipped weights
    run("finetune", config_file=cfg, ckpt_dir=str(tmp / "ft"), output_dir=str(tmp / "ft_eval"), epochs=1,
        pretrained="tiny_enc", freeze_encoder=True, **common)
    shipped = torch.load(root / SHIPPED_DIR / "tiny_enc.pt", weights_only=True)["model"]
    tuned = torch.load(tmp / "ft" / "finetune_best.pt", weights_only=True)["model"]
    for k, v in shipped.items():
        if "running_" not in k and "num_batches" not in k:  # BatchNorm statistics move in train mode
            torch.testing.assert_close(tuned[k], v, msg=k)
    assert read_run_info(tmp / "ft" / "finetune_best.pt")["pretrained"] == "tiny_enc"
    ship_weights("tiny_clf", tmp / "ft" / "finetune_best.pt", "classifier", root, box=16)
    # inference and evaluate take the shipped classifier by name; an encoder name is a one-line error
    inf = [str(root / "configs" / f) for f in ("common.json", "inference.json")]
    run("inference", config_file=inf, checkpoint="tiny_clf", output_dir=str(tmp / "pred"),
        infer_table=str(tmp / "data" / "particles.star"), **common)
    assert (tmp / "pred" / "predictions.star").is_file()
    with pytest.raises(RuntimeError) as info:  # MONAI wraps an expression's error; the CLI prints the cause's line
        run("inference", config_file=inf, checkpoint="tiny_enc", output_dir=str(tmp / "pred2"),
            infer_table=str(tmp / "data" / "particles.star"), **common)
    assert isinstance(info.value.__cause__, ConfigError)
    assert "is a shipped encoder, and this run needs a classifier" in str(info.value.__cause__)
    ev = [str(root / "configs" / f) for f in ("common.json", "finetune.json", "evaluate.json")]
    run("evaluate", config_file=ev, checkpoint="tiny_clf", ckpt_dir=str(tmp / "ft"), output_dir=str(tmp / "ev"), **common)
    assert (tmp / "ev" / "predictions_test.csv").is_file()


def test_embed_takes_shipped_weights_by_name(shipped_bundle: dict) -> None:
    tmp, root, common = shipped_bundle["tmp"], shipped_bundle["root"], shipped_bundle["common"]
    cfg = [str(root / "configs" / f) for f in ("common.json", "inference.json", "embed.json")]
    run("embed", config_file=cfg, checkpoint="tiny_enc", output_dir=str(tmp / "emb"), n_clusters=3,
        infer_table=str(tmp / "data" / "particles.star"), **common)
    assert (tmp / "emb" / "clusters.star").is_file() and (tmp / "emb" / "embedding.png").is_file()


# -- the weights the repository ships -------------------------------------------------------------
SHIPPED = {"simclr_rb3d_bn_16": "encoder", "simclr_rb3d_bn_16_classifier": "classifier"}
#: measured with the shipped weights on the 2-core AMD EPYC (docs/records/shipped_weights_v4): on 300 such
#: subtomograms a 5-fold CV probe gets 33.7 % on the shipped encoder vs 12.7 % on random features as wide; the
#: classifier 56.0 / 52.5 / 48.0 / 47.0 / 47.5 % with 0-4 neighbours. The thresholds are well below the measured
#: margins (those of the 32-channel weights before them, 23.0 vs 10.7 % and 42-55 %, pass them too)
PROBE_MARGIN = 0.06
CLASSIFIER_MIN = 0.28


def test_the_bundle_ships_its_weights_small_and_intact() -> None:
    from cryomonai.engines.weights import sha256_of, shipped_weights
    from cryomonai.pipeline import bundle_dir

    index = shipped_weights(bundle_dir())
    assert {name: entry["kind"] for name, entry in index.items()} == SHIPPED
    for name, entry in index.items():
        path = Path(weights_file(name, bundle_dir()))
        assert path.stat().st_size < 2_500_000 and sha256_of(path) == entry["sha256"]  # 64 channels, float32
        assert (entry["encoder"], entry["box"], entry["voxel_size"]) == ("rb3d_bn", 16, 20.0)
        info = read_run_info(path, "rb3d_bn")
        assert info["box"] == 16 and info["method"] == "simclr"
    assert (bundle_dir() / "docs" / "model_card.md").is_file()


@pytest.fixture(scope="module")
def fresh_simulation(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """Simulated subtomograms the shipped weights never saw (another seed), of their kind — the walkthrough's:
    10 classes × 30, SNR 0.05 (the simulator's default noise model), 16³ at 20 Å (32³ binned 2×), 0–4
    neighbours (the shortcut-free defaults), ±2 voxels; the table and its volume cache."""
    from cryomonai.io import read_particle_table
    from cryomonai.simulate.prepare import ensure_dataset

    root = tmp_path_factory.mktemp("fresh")
    table = ensure_dataset(root / "data" / "particles.star", root / "data" / "cache" / "volumes.npy", progress=False,
                           n_per_class=30, snr=0.05, box=16, binning=2, max_shift=2.0, seed=11, workers=0)
    return read_particle_table(table), root / "data" / "cache" / "volumes.npy"


def test_the_shipped_encoder_beats_random_features(fresh_simulation: tuple) -> None:
    """A linear probe (5-fold cross-validated over all 300) on the shipped encoder's frozen features
    against the same encoder at random initialisation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cryomonai.evaluation.readouts import encoder_features
    from cryomonai.pipeline import bundle_dir

    table, cache = fresh_simulation
    labels = table.df["label_index"].to_numpy()

    shipped_file = weights_file("simclr_rb3d_bn_16", bundle_dir())
    width = saved_encoder_args(shipped_file, "rb3d_bn")  # random features as wide as the shipped encoder

    def probe(checkpoint: str) -> float:
        features = encoder_features(table, cache, "rb3d_bn", checkpoint, **width)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        return float(cross_val_score(model, features, labels, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean())

    shipped, random_features = probe(shipped_file), probe("")
    assert shipped >= random_features + PROBE_MARGIN, f"shipped {shipped:.3f} vs random features {random_features:.3f}"


def test_the_shipped_classifier_classifies_unseen_subtomograms(fresh_simulation: tuple) -> None:
    from torch.utils.data import DataLoader

    from cryomonai.data import VolumeStackDataset
    from cryomonai.pipeline import bundle_dir
    from cryomonai.transforms import eval_transform

    table, cache = fresh_simulation
    path = weights_file("simclr_rb3d_bn_16_classifier", bundle_dir(), "classifier")
    ckpt = torch.load(path, weights_only=True)
    assert list(ckpt["run_info"]["classes"]) == list(table.class_names)
    net = Classifier(build_network("rb3d_bn", path), len(table.class_names))  # as wide as it was trained
    net.load_state_dict(ckpt["model"])
    net.eval()
    preds = []
    with torch.no_grad():
        for batch in DataLoader(VolumeStackDataset(table, cache, transform=eval_transform(), progress=False), batch_size=64):
            preds.append(net(batch["image"].as_tensor()).argmax(1))
    accuracy = float((torch.cat(preds).numpy() == table.df["label_index"].to_numpy()).mean())
    assert accuracy >= CLASSIFIER_MIN, f"accuracy {accuracy:.3f} on 300 unseen subtomograms (chance 0.10)"
