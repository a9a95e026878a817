"""Engines: the SSL step on MONAI's trainer, checkpoints (encoder loading, resume), data, handlers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from cryomonai.data import VolumeStackDataset, label_fraction_subset
from cryomonai.engines import (
    LearningRateWriter,
    PredictionsWriter,
    RunInfo,
    SSLStep,
    ViewSlicesHandler,
    central_slices,
    latest_checkpoint,
    load_pretrained_encoder,
    read_run_info,
    resume_handlers,
    ssl_iteration,
)
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import read_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.simulate.prepare import ensure_dataset
from cryomonai.ssl import build_method
from cryomonai.transforms import eval_transform

CLASSES = ("1bxn", "1qvr", "1s3x")


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes × 8 subtomograms of 24³ (60/20/20 split), simulated once for the module."""
    from cryomonai.simulate.dataset import simulate_dataset

    out = tmp_path_factory.mktemp("engines") / "sim"
    return simulate_dataset(out, n_per_class=8, box=24, classes=CLASSES, seed=0, workers=0, progress=False)


def _views(seed: int, b: int = 8, size: int = 16) -> dict[str, torch.Tensor]:
    """A fixed batch of two noisy views of the same random volumes: (B, 1, size, size, size) each."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, 1, size, size, size, generator=g)
    return {f"view_{i}": base + 0.3 * torch.randn(base.shape, generator=g) for i in range(2)}


def _trainer(method: torch.nn.Module, batches: list, epochs: int, lr: float = 1e-3) -> SupervisedTrainer:
    return SupervisedTrainer(
        device="cpu", max_epochs=epochs, train_data_loader=batches, network=SSLStep(method),
        optimizer=torch.optim.Adam(method.parameters(), lr=lr), loss_function=None,
        iteration_update=ssl_iteration, decollate=False,
    )


def test_ssl_iteration_lowers_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    method = build_method("simclr", build_encoder("rb3d", channels=8))
    trainer = _trainer(method, [_views(0)], epochs=12)
    losses: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"]))
    trainer.run()
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


def test_ssl_iteration_steps_the_method_state() -> None:
    """MoCo through the trainer: one momentum update per step, queue filled by B per step, logs returned."""
    torch.manual_seed(0)
    method = build_method("moco", build_encoder("rb3d", channels=8), queue_size=32, momentum=0.9)
    key_before = copy.deepcopy(method.key_encoder.state_dict())
    batches = [_views(s, b=4) for s in range(3)]
    trainer = _trainer(method, batches, epochs=2)
    trainer.run()
    assert int(method.steps_done) == 6  # 3 iterations × 2 epochs
    assert int(method.queue_ptr) == (6 * 4) % 32
    assert set(trainer.state.output) == {"loss", "pos_sim"}
    assert all(isinstance(v, float) for v in trainer.state.output.values())
    moved = [not torch.equal(key_before[k], v) for k, v in method.key_encoder.state_dict().items()]
    assert any(moved)
    for p in method.key_encoder.parameters():  # the key encoder never gets gradients
        assert p.grad is None


def test_ssl_iteration_needs_the_views() -> None:
    method = build_method("simclr", build_encoder("rb3d", channels=8))
    batch = {"image": torch.zeros(2, 1, 8, 8, 8)}
    with pytest.raises(ConfigError, match="view_0"):
        _trainer(method, [batch], epochs=1).run()


def test_ssl_iteration_rejects_a_network_without_a_method() -> None:
    net = build_encoder("rb3d", channels=8)
    trainer = SupervisedTrainer("cpu", 1, [_views(0, b=2)], net, torch.optim.Adam(net.parameters()), None,
                                iteration_update=ssl_iteration, decollate=False)
    with pytest.raises(ConfigError, match="SSLStep"):
        trainer.run()


# ---- checkpoints ---------------------------------------------------------------------------------


def _ssl_checkpoint(path: Path, encoder: str = "rb3d", channels: int = 8, info: bool = True) -> dict:
    torch.manual_seed(1)
    method = build_method("moco", build_encoder(encoder, channels=channels) if encoder == "rb3d"
                          else build_encoder(encoder), queue_size=8)
    ckpt = {"model": method.state_dict()}
    if info:
        ckpt["run_info"] = RunInfo(task="pretrain", encoder=encoder, method="moco").state_dict()
    torch.save(ckpt, path)
    return ckpt


def test_load_pretrained_encoder_loads_exactly_the_encoder(tmp_path: Path) -> None:
    ckpt = _ssl_checkpoint(tmp_path / "pre.pt")
    torch.manual_seed(2)
    clf = Classifier(build_encoder("rb3d", channels=8), num_classes=3)
    head_before = copy.deepcopy(clf.head.state_dict())
    assert load_pretrained_encoder(clf, tmp_path / "pre.pt", encoder="rb3d") is clf
    expected = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    loaded = clf.encoder.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert all(torch.equal(clf.head.state_dict()[k], v) for k, v in head_before.items())  # head untouched


def test_load_pretrained_encoder_without_checkpoint_keeps_random_weights() -> None:
    clf = Classifier(build_encoder("rb3d", channels=8), num_classes=3)
    before = copy.deepcopy(clf.state_dict())
    for empty in (None, ""):
        load_pretrained_encoder(clf, empty)
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())


def test_load_pretrained_encoder_errors(tmp_path: Path) -> None:
    clf = Classifier(build_encoder("rb3d", channels=8), num_classes=3)
    with pytest.raises(CryoDataError, match="checkpoint not found"):
        load_pretrained_encoder(clf, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CryoDataError, match="not a readable PyTorch checkpoint"):
        load_pretrained_encoder(clf, tmp_path / "junk.pt")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "foreign.pt")
    with pytest.raises(CryoDataError, match="no 'encoder"):
        load_pretrained_encoder(clf, tmp_path / "foreign.pt")
    _ssl_checkpoint(tmp_path / "resnet.pt", encoder="resnet10")
    with pytest.raises(ConfigError, match="encoder 'resnet10' but this run builds 'rb3d'"):
        load_pretrained_encoder(clf, tmp_path / "resnet.pt", encoder="rb3d")
    _ssl_checkpoint(tmp_path / "wide.pt", channels=16, info=False)  # same names, other shapes
    with pytest.raises(ConfigError, match="encoder weights do not"):
        load_pretrained_encoder(clf, tmp_path / "wide.pt")


def test_run_info_checks_identity_on_load(tmp_path: Path) -> None:
    info = RunInfo(task="pretrain", encoder="rb3d", method="moco")
    info.load_state_dict({"task": "pretrain", "encoder": "rb3d", "method": "moco", "extra": 1})
    assert info.state_dict()["extra"] == 1
    with pytest.raises(ConfigError, match="method 'simclr'"):
        info.load_state_dict({"method": "simclr"})
    torch.save({"run_info": info.state_dict(), "model": {}}, tmp_path / "c.pt")
    assert read_run_info(tmp_path / "c.pt", encoder="rb3d")["method"] == "moco"
    with pytest.raises(ConfigError, match="encoder 'rb3d'"):
        read_run_info(tmp_path / "c.pt", encoder="resnet10")


def test_resume_handlers(tmp_path: Path) -> None:
    assert resume_handlers(False, tmp_path, "pretrain", {}) == []
    assert resume_handlers("false", tmp_path, "pretrain", {}) == []
    with pytest.raises(ConfigError, match="no pretrain_checkpoint_epoch"):
        resume_handlers(True, tmp_path, "pretrain", {})
    for n in (2, 10, 9):
        torch.save({"model": torch.nn.Linear(1, 1).state_dict(), "rng": {"seed": 0}}, tmp_path / f"pretrain_checkpoint_epoch={n}.pt")
    (tmp_path / "finetune_checkpoint_epoch=99.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path, "pretrain").name == "pretrain_checkpoint_epoch=10.pt"
    (loader,) = resume_handlers("true", tmp_path, "pretrain", {"model": torch.nn.Linear(1, 1)})
    assert Path(loader.load_path).name == "pretrain_checkpoint_epoch=10.pt"
    # a checkpoint from before seeds were saved resumes without them; any other missing part is an error
    old = tmp_path / "old.pt"
    torch.save({"model": torch.nn.Linear(1, 1).state_dict()}, old)
    (loader,) = resume_handlers(str(old), tmp_path, "pretrain", {"model": torch.nn.Linear(1, 1), "rng": object()})
    assert set(loader.load_dict) == {"model"}
    with pytest.raises(CryoDataError, match=r"lacks \['optimizer'\]"):
        resume_handlers(str(old), tmp_path, "pretrain", {"model": torch.nn.Linear(1, 1), "optimizer": object()})
    with pytest.raises(CryoDataError, match="not a readable PyTorch checkpoint"):
        resume_handlers(str(tmp_path / "finetune_checkpoint_epoch=99.pt"), tmp_path, "finetune", {})
    with pytest.raises(CryoDataError, match="not found"):
        resume_handlers(str(tmp_path / "nope.pt"), tmp_path, "pretrain", {})


# ---- the bundle's data (cryomonai.simulate.ensure_dataset, cryomonai.data.label_fraction_subset) ------


def test_ensure_dataset_simulates_once(tmp_path: Path) -> None:
    table = tmp_path / "sim" / "particles.star"
    with pytest.raises(CryoDataError, match="particle table not found"):
        ensure_dataset(table, simulate=False)
    with pytest.raises(CryoDataError, match="particle table not found"):  # `--simulate false` on a command line
        ensure_dataset(table, simulate="false", progress="False")
    with pytest.raises(ConfigError, match=r"key 'simulate': 'maybe' is not true or false"):
        ensure_dataset(table, simulate="maybe")
    assert not table.parent.exists()  # nothing simulated
    out = ensure_dataset(table, tmp_path / "cache" / "v.npy", progress=False, n_per_class=1,
                         classes=CLASSES[:2], box=16, workers=0)
    assert out == table and table.is_file() and (tmp_path / "cache" / "v.npy").is_file()
    stamp = table.stat().st_mtime_ns
    assert ensure_dataset(table, simulate=False) == table and table.stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="only particles.star"):
        ensure_dataset(tmp_path / "other" / "mine.csv")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "picked.csv").write_text("path,label\n")
    with pytest.raises(CryoDataError, match=r"its folder exists \(tables there: \['picked.csv'\]\)"):
        ensure_dataset(tmp_path / "mine" / "particles.star")  # not simulated into a user's folder


def test_label_fraction_subset_is_nested_and_stratified(tiny_table: Path, tmp_path: Path) -> None:
    ds = VolumeStackDataset(tiny_table, tmp_path / "v.npy", split="train", progress=False)
    labels = np.array([d["label"] for d in ds.data])
    subsets = [set(label_fraction_subset(ds, f, seed=0, num_classes=3).indices) for f in (0.25, 0.5, 1.0)]
    assert subsets[0] < subsets[1] < subsets[2] == set(range(len(ds)))
    for chosen in subsets:
        assert sorted(set(labels[sorted(chosen)])) == [0, 1, 2]  # every class keeps examples
    assert subsets[1] != set(label_fraction_subset(ds, 0.5, seed=1).indices)


# ---- handlers ------------------------------------------------------------------------------------


class _Writer:
    """Records add_image / add_scalar calls like a SummaryWriter."""

    def __init__(self) -> None:
        self.images: list = []
        self.scalars: list = []

    def add_image(self, tag: str, img: torch.Tensor, step: int) -> None:
        self.images.append((tag, img, step))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))


def test_central_slices_picks_the_middle_planes() -> None:
    vol = torch.zeros(6, 4, 5)  # (z, y, x)
    vol[3, 2, 1] = 1.0  # on both central planes (z = 3, y = 2)
    vol[0, 0, 0] = 5.0  # on neither
    out = central_slices(vol)
    xy, xz = torch.zeros(4, 5), torch.zeros(6, 5)
    xy[2, 1], xz[3, 1] = 1.0, 1.0
    assert torch.equal(out, torch.cat([xy, xz]))


def test_view_slices_and_lr_writers_on_a_trainer() -> None:
    torch.manual_seed(0)
    method = build_method("simclr", build_encoder("rb3d", channels=8))
    trainer = _trainer(method, [_views(0, b=2, size=12)], epochs=2)
    writer = _Writer()
    ViewSlicesHandler(writer).attach(trainer)
    LearningRateWriter(writer, trainer.optimizer).attach(trainer)
    trainer.run()
    # two views side by side, each the 12 × 12 xy slice above the 12 × 12 xz slice; one image per epoch
    assert [(t, tuple(img.shape), s) for t, img, s in writer.images] == [("views", (1, 24, 24), e) for e in (1, 2)]
    assert all(0.0 <= float(img.min()) and float(img.max()) <= 1.0 for _, img, _ in writer.images)
    assert writer.scalars == [("lr", 1e-3, 1), ("lr", 1e-3, 2)]


def test_predictions_writer_writes_one_row_per_particle(tiny_table: Path, tmp_path: Path) -> None:
    table = read_particle_table(tiny_table)
    ds = VolumeStackDataset(table, tmp_path / "v.npy", split="test", transform=eval_transform(), progress=False)
    torch.manual_seed(0)
    net = Classifier(build_encoder("rb3d", channels=8), num_classes=len(table.class_names))
    writer = PredictionsWriter(tmp_path / "out" / "pred.csv", table.class_names)
    evaluator = SupervisedEvaluator("cpu", DataLoader(ds, batch_size=2), net, val_handlers=[writer], decollate=False)
    evaluator.run()
    df = pd.read_csv(tmp_path / "out" / "pred.csv", keep_default_na=False)
    assert len(df) == len(ds)
    assert list(df.columns[:6]) == ["index", "path", "label", "prediction", "pred_index", "confidence"]
    probs = df[[f"p_{c}" for c in table.class_names]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose(probs.max(1), df["confidence"], atol=1e-5)
    assert (df["prediction"] == [table.class_names[k] for k in df["pred_index"]]).all()
    truth = table.df.iloc[df["index"]]
    assert list(df["label"]) == list(truth["label"]) and list(df["path"]) == list(truth["path"])
