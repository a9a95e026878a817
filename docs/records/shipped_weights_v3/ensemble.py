"""Measured, not taken: more labels and a softmax ensemble for the shipped classifier, on validation only.

    .venv/bin/python docs/records/shipped_weights_v3/ensemble.py > docs/records/shipped_weights_v3/ensemble.txt

The split: validation of the `shipped` preset simulated with seed 261301 and 1,500 per class (/work/runs/shipped_big,
3,000 subtomograms), unseen by every member. Members: the shipped classifier (SimCLR, 3,600 labels of seed 261300),
random init trained beside it, and SimCLR fine-tuned on seed 261301's 9,000 labels (Adam 3e-4; the run stopped before
its other recipes). Batch-norm statistics: precise BN on each member's own training split, as shipped.
"""
from pathlib import Path
import numpy as np, torch
from torch.utils.data import DataLoader, Subset
from cryomonai.data import VolumeStackDataset
from cryomonai.engines import AutocastInferer, PreciseBN, PrepareBatchMemoryFormat, native_bf16
from cryomonai.engines.weights import weights_file
from cryomonai.io import read_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.pipeline import bundle_dir
from cryomonai.transforms import eval_transform
torch.set_num_threads(1)
inferer, prepare = AutocastInferer(native_bf16("cpu")), PrepareBatchMemoryFormat(torch.channels_last_3d)
def tab(grid):
    d = Path(grid) / "data/walkthrough_snr0.05"; return read_particle_table(d / "particles.star"), d / "cache/volumes.npy"
big_t, big_c = tab("/work/runs/shipped_big"); old_t, old_c = tab("/work/runs/shipped")
def load(path, t=None, c=None):
    net = Classifier(build_encoder("rb3d_bn"), 10); net.load_state_dict(torch.load(path, weights_only=False)["model"]); net.eval()
    if t is not None:
        tr = VolumeStackDataset(t, c, split="train", progress=False)
        PreciseBN(net, t, Subset(tr, list(range(len(tr)))), c, prepare_batch=prepare, inferer=inferer, batch_size=16).recompute()
    return net
rows = np.flatnonzero(big_t.df["split"].to_numpy() == "val"); y = big_t.df["label_index"].to_numpy()[rows]
vols = Subset(VolumeStackDataset(big_t, big_c, transform=eval_transform(), progress=False), rows)
def probs(net):
    with torch.no_grad():
        return torch.cat([inferer(prepare(b, "cpu")[0], net).float().softmax(1) for b in DataLoader(vols, batch_size=100)]).numpy()
P = {
 "simclr_3600 (shipped)": probs(load(weights_file("simclr_rb3d_bn_16_classifier", bundle_dir(), "classifier"))),
 "random_3600": probs(load("/work/runs/shipped/cells/walkthrough_snr0.05/random/adam_1e-3/f100_r0/models/finetune_best.pt", old_t, old_c)),
 "simclr_9000_3e-4": probs(load("/work/runs/shipped_big/cells/walkthrough_snr0.05/simclr/adam_3e-4/f100_r0/models/finetune_best.pt", big_t, big_c)),
}
for k, p in P.items(): print(f"{k}: {100*(p.argmax(1)==y).mean():.1f} %")
import itertools
for r in (2, 3):
    for ks in itertools.combinations(P, r):
        p = sum(P[k] for k in ks); print(" + ".join(ks), f"{100*(p.argmax(1)==y).mean():.1f} %")
