"""Validation accuracy of a grid's fine-tuned classifiers with their saved batch-norm statistics (eval), with
the statistics recomputed on the whole training split un-augmented (recal), and with each batch's own statistics.

    .venv/bin/python docs/records/precise_bn/diagnose.py GRID RUN [RUN ...]   (RUN: method/recipe/fXXX_rN)
"""
import sys, torch, numpy as np, copy
from torch.utils.data import DataLoader, Subset
from cryomonai.data import VolumeStackDataset
from cryomonai.data.dataset import read_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.transforms import eval_transform
torch.set_num_threads(1); torch.manual_seed(0)
grid = sys.argv[1]; runs = sys.argv[2:]
d = f"{grid}/data/snr_inf_free"
table = read_particle_table(d + "/particles.star")
ds = VolumeStackDataset(table, d + "/cache/volumes.npy", transform=eval_transform(), progress=False)
split = table.df["split"].to_numpy(); y = table.df["label_index"].to_numpy()
val, train = np.flatnonzero(split == "val"), np.flatnonzero(split == "train")
def batches(idx, bs=100):
    return [b["image"].as_tensor() for b in DataLoader(Subset(ds, idx), batch_size=bs)]
Xv, Xt = torch.cat(batches(val)), torch.cat(batches(train))
def acc(net, train_mode=False):
    net.train(train_mode)
    with torch.no_grad():
        p = torch.cat([net(Xv[i:i+100]).argmax(1) for i in range(0, len(Xv), 100)])
    return (p.numpy() == y[val]).mean()
def recal(net, X, bs=16):
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats(); m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        perm = torch.randperm(len(X))
        for i in range(0, len(X), bs): net(X[perm[i:i+bs]])
    return net
for run in runs:
    for ck in ("finetune_final.pt", "finetune_best.pt"):
        state = torch.load(f"{grid}/cells/snr_inf_free/{run}/models/{ck}", weights_only=False)["model"]
        net = Classifier(build_encoder("rb3d_bn"), 10); net.load_state_dict(state)
        print(run, ck, "eval %.3f" % acc(net), "recal(train, unaug) %.3f" % acc(recal(net, Xt)), "batch-stats %.3f" % acc(net, True))
