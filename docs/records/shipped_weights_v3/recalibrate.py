"""Re-ship the shipped classifier with precise-BN statistics (run from the repository root):

    .venv/bin/python docs/records/shipped_weights_v3/recalibrate.py GRID [--ship] > docs/records/shipped_weights_v3/recalibrate.txt

GRID: the `shipped` grid the classifier came from (its dataset, split and volume cache). The classifier's
batch-norm statistics are recomputed as the bundle's ``precise_bn`` does before a validation pass (its
labelled training volumes, un-augmented, at most 512; channels-last, bf16 autocast where the CPU has it),
and the grid's validation split is scored before and after. Only the statistics change; ``--ship`` writes
the result as ``simclr_rb3d_bn_16_classifier`` (``cryomonai.engines.weights.ship_weights``) if validation
prefers it.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from cryomonai.data import VolumeStackDataset
from cryomonai.engines import AutocastInferer, PreciseBN, PrepareBatchMemoryFormat, native_bf16
from cryomonai.engines.weights import SHIPPED_DIR, WEIGHTS_INDEX, ship_weights, weights_file
from cryomonai.io import read_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.pipeline import bundle_dir
from cryomonai.transforms import eval_transform

NAME = "simclr_rb3d_bn_16_classifier"
torch.set_num_threads(1)
grid = Path(sys.argv[1])
data = grid / "data" / "walkthrough_snr0.05"
table = read_particle_table(data / "particles.star")
cache = data / "cache" / "volumes.npy"
ckpt = torch.load(weights_file(NAME, bundle_dir(), "classifier"), weights_only=True)
net = Classifier(build_encoder("rb3d_bn"), len(table.class_names))
net.load_state_dict(ckpt["model"])
net.eval()
inferer, prepare = AutocastInferer(native_bf16("cpu")), PrepareBatchMemoryFormat(torch.channels_last_3d)


def accuracy(split: str) -> float:
    rows = np.flatnonzero(table.df["split"].to_numpy() == split)
    volumes = Subset(VolumeStackDataset(table, cache, transform=eval_transform(), progress=False), rows)
    with torch.no_grad():
        pred = torch.cat([inferer(prepare(b, "cpu")[0], net).argmax(1) for b in DataLoader(volumes, batch_size=100)])
    return float((pred.numpy() == table.df["label_index"].to_numpy()[rows]).mean())


before = accuracy("val")
train = VolumeStackDataset(table, cache, split="train", progress=False)  # label fraction 1.0: every training row
PreciseBN(net, table, Subset(train, list(range(len(train)))), cache, prepare_batch=prepare, inferer=inferer,
          batch_size=16).recompute()
after = accuracy("val")
print(f"validation accuracy ({int((table.df['split'] == 'val').sum())} subtomograms): as shipped {100 * before:.1f} %, "
      f"precise BN {100 * after:.1f} %")
if "--ship" in sys.argv and after > before:
    index = (bundle_dir() / SHIPPED_DIR / WEIGHTS_INDEX).read_text()
    import json

    info = {k: v for k, v in json.loads(index)[NAME].items() if k not in ("file", "kind", "encoder", "classes", "sha256")}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recalibrated.pt"
        torch.save({"model": net.state_dict(), "run_info": ckpt["run_info"]}, path)
        shipped = ship_weights(NAME, path, "classifier", bundle_dir(), **info,
                               bn_stats="precise_bn: training split, un-augmented, 512 volumes")
    print(f"shipped {shipped}")
