import sys, numpy as np, torch, json
torch.set_num_threads(1)
from cryomonai.io import read_particle_table, read_mrc
from cryomonai.networks import build_encoder, Classifier
from cryomonai.data import label_subset
d = "/work/main/runs/grid_cpu/data/snr_inf_bin2"
df = read_particle_table(d + "/particles.star").df
X = np.stack([read_mrc(p)[0] for p in df.path]).astype(np.float32)
X = (X - X.mean(axis=(1,2,3), keepdims=True)) / X.std(axis=(1,2,3), keepdims=True)
X = torch.from_numpy(X)[:, None].contiguous(memory_format=torch.channels_last_3d)
y = df.label_index.to_numpy(); split = df.split.to_numpy(); yt = torch.from_numpy(y).long()
ck = torch.load("/work/main/runs/grid_cpu/pretrain/snr_inf_bin2/simclr/models/pretrain.pt", weights_only=True)["model"]
enc_state = {k[len("encoder."):]: v for k, v in ck.items() if k.startswith("encoder.")}
def run(pre, seed, frac, enc_lr, head_lr, epochs=15, bs=16):
    torch.manual_seed(seed)
    enc = build_encoder("rb3d")
    if pre: enc.load_state_dict(enc_state)
    net = Classifier(enc, 10).to(memory_format=torch.channels_last_3d)
    tr = np.flatnonzero(split == "train"); ch = tr[label_subset(y[tr], frac, seed)]
    va, te = np.flatnonzero(split == "val"), np.flatnonzero(split == "test")
    opt = torch.optim.Adam([{"params": net.encoder.parameters(), "lr": enc_lr}, {"params": net.head.parameters(), "lr": head_lr}], weight_decay=1e-4)
    sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs); best = (-1, 0)
    for ep in range(epochs):
        net.train(); perm = ch[torch.randperm(len(ch)).numpy()]
        for i in range(0, len(perm), bs):
            idx = perm[i:i+bs]; l = torch.nn.functional.cross_entropy(net(X[idx]), yt[idx]); opt.zero_grad(); l.backward(); opt.step()
        sch.step(); net.eval()
        with torch.no_grad():
            v = (net(X[va]).argmax(1) == yt[va]).float().mean().item()
            if v > best[0]: best = (v, (net(X[te]).argmax(1) == yt[te]).float().mean().item())
    return best[1]
recipes = {"adam1e-3": (1e-3, 1e-3), "adam1e-4": (1e-4, 1e-4), "adam3e-4": (3e-4, 3e-4), "enc1e-4_head1e-3": (1e-4, 1e-3)}
for name in sys.argv[1].split(","):
    el, hl = recipes[name]
    for pre in (False, True):
        accs = [run(pre, s, 0.25, el, hl) for s in range(5)]
        print(json.dumps({"recipe": name, "pretrained": pre, "mean": float(np.mean(accs)), "std": float(np.std(accs, ddof=1)), "accs": accs}), flush=True)
