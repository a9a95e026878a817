"""Recipe search for the cpu grid preset (scratch; not shipped)."""
import copy, json, os, sys, time
import numpy as np, torch
from torch.utils.data import DataLoader, Dataset

def main():
    from cryomonai.simulate.dataset import simulate_dataset
    from cryomonai.io import read_particle_table, read_mrc
    from cryomonai.networks import build_encoder, Classifier
    from cryomonai.ssl import build_method
    from cryomonai.transforms import cryo3d_views, paper_views
    from cryomonai.data import label_subset
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    tiny = os.environ.get("TINY") == "1"
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = os.environ.get("OUT", "/tmp/explore"); os.makedirs(out, exist_ok=True)
    log = open(out + "/explore.jsonl", "a")
    def emit(**kw):
        print(json.dumps(kw), flush=True); log.write(json.dumps(kw) + "\n"); log.flush()
    npc = 8 if tiny else int(os.environ.get("NPC", 100))
    datasets = {}
    for name, kw in [("inf_s2_n4", dict(snr=float("inf"), max_shift=2.0, n_neighbours=4))] + ([] if tiny else [("inf_s2_n1", dict(snr=float("inf"), max_shift=2.0, n_neighbours=1))]):
        d = f"/tmp/explore_data/{name}_{npc}"
        if not os.path.exists(d + "/particles.star"):
            simulate_dataset(d, n_per_class=npc, box=16, binning=2, workers=min(16, os.cpu_count()), overwrite=True, progress=False, **kw)
        df = read_particle_table(d + "/particles.star").df
        X = np.stack([read_mrc(p)[0] for p in df.path]).astype(np.float32)
        X = (X - X.mean(axis=(1, 2, 3), keepdims=True)) / X.std(axis=(1, 2, 3), keepdims=True)
        datasets[name] = (torch.from_numpy(X)[:, None], df.label_index.to_numpy(), df.split.to_numpy())
    class Views(Dataset):
        def __init__(s, X, tf): s.X, s.tf = X, tf
        def __len__(s): return len(s.X)
        def __getitem__(s, i): return s.tf({"image": s.X[i].clone()})
    def feats(enc, X):
        enc.eval()
        with torch.no_grad(): return torch.cat([enc(X[i:i + 256].to(dev)).float().cpu() for i in range(0, len(X), 256)]).numpy()
    def probe(F, y, split, frac, seed):
        tr = np.flatnonzero(split == "train"); te = split == "test"
        ch = tr[label_subset(y[tr], frac, seed)]
        s = StandardScaler().fit(F[tr])
        return LogisticRegression(C=0.1, max_iter=3000).fit(s.transform(F[ch]), y[ch]).score(s.transform(F[te]), y[te])
    def finetune(enc_state, X, y, split, frac, seed, lr, epochs, opt="sgd", bs=16):
        torch.manual_seed(seed)
        enc = build_encoder("rb3d")
        if enc_state is not None: enc.load_state_dict(enc_state)
        net = Classifier(enc, int(y.max()) + 1).to(dev)
        tr = np.flatnonzero(split == "train"); ch = tr[label_subset(y[tr], frac, seed)]
        va, te = np.flatnonzero(split == "val"), np.flatnonzero(split == "test")
        o = torch.optim.SGD(net.parameters(), lr, momentum=0.9, weight_decay=1e-4) if opt == "sgd" else torch.optim.Adam(net.parameters(), lr, weight_decay=1e-4)
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(o, epochs)
        yt = torch.from_numpy(y).long(); best = (-1, 0)
        g = torch.Generator().manual_seed(seed)
        for ep in range(epochs):
            net.train(); perm = ch[torch.randperm(len(ch), generator=g).numpy()]
            for i in range(0, len(perm), bs):
                idx = perm[i:i + bs]; l = torch.nn.functional.cross_entropy(net(X[idx].to(dev)), yt[idx].to(dev))
                o.zero_grad(); l.backward(); o.step()
            sch.step(); net.eval()
            with torch.no_grad():
                acc = lambda ids: (net(X[ids].to(dev)).argmax(1).cpu() == yt[ids]).float().mean().item()
                v = acc(va)
                if v > best[0]: best = (v, acc(te))
        return best[1]
    rnd_done = set()
    configs = json.loads(os.environ.get("CONFIGS", "[]")) or [
        dict(ds="inf_s2_n4", method="simclr", views="beam", lr=1e-3, epochs=100, bs=64),
        dict(ds="inf_s2_n4", method="simclr", views="paper", lr=1e-3, epochs=100, bs=64),
        dict(ds="inf_s2_n4", method="simclr", views="so3", lr=1e-3, epochs=100, bs=64),
        dict(ds="inf_s2_n4", method="moco", views="beam", lr=1e-3, epochs=100, bs=32, kw={"momentum": 0.99}),
        dict(ds="inf_s2_n4", method="vicreg", views="beam", lr=1e-3, epochs=100, bs=64),
        dict(ds="inf_s2_n1", method="simclr", views="beam", lr=1e-3, epochs=100, bs=64),
        dict(ds="inf_s2_n4", method="simclr", views="beam", lr=1e-3, epochs=400, bs=64),
    ]
    if tiny:
        configs = [dict(c, epochs=2) for c in configs[:2]]
    ft = [dict(lr=5e-3, epochs=20, opt="sgd"), dict(lr=1e-3, epochs=20, opt="adam")]
    for cfg in configs:
        X, y, split = datasets[cfg["ds"]]
        if cfg["ds"] not in rnd_done:
            rnd_done.add(cfg["ds"])
            for seed in range(3):
                torch.manual_seed(seed); F = feats(build_encoder("rb3d").to(dev), X)
                res = {f"ft_{f['opt']}_{f['lr']}": finetune(None, X, y, split, 0.25, seed, **f) for f in ft}
                emit(ds=cfg["ds"], method="random", seed=seed, probe25=probe(F, y, split, 0.25, seed), probe100=probe(F, y, split, 1.0, seed), **res)
        torch.manual_seed(0)
        enc = build_encoder("rb3d")
        m = build_method(cfg["method"], enc, **cfg.get("kw", {})).to(dev)
        tf = {"paper": lambda: paper_views(), "beam": lambda: cryo3d_views(rotation="beam", pixel_size_nm=2.0), "so3": lambda: cryo3d_views(rotation="so3", pixel_size_nm=2.0)}[cfg["views"]]()
        tr = np.flatnonzero(split == "train")
        dl = DataLoader(Views(X[tr], tf), batch_size=cfg["bs"], shuffle=True, drop_last=True, num_workers=min(12, os.cpu_count() - 1), persistent_workers=True, worker_init_fn=lambda w: tf.set_random_state(1000 + w + int(time.time())))
        opt = torch.optim.Adam(m.parameters(), cfg["lr"], weight_decay=1e-4)
        total = cfg["epochs"] * len(dl); step = 0; t0 = time.time()
        evals = {max(1, cfg["epochs"] // 4), cfg["epochs"] // 2, cfg["epochs"]}
        for ep in range(1, cfg["epochs"] + 1):
            m.train(); ls = []
            for b in dl:
                o = m.training_step([b["view_0"].to(dev, non_blocking=True), b["view_1"].to(dev, non_blocking=True)])
                opt.zero_grad(); o["loss"].backward(); opt.step(); step += 1; m.on_train_step_end(step, total); ls.append(o["loss"].item())
            if ep in evals:
                F = feats(enc, X); st = copy.deepcopy(enc.state_dict())
                res = {}
                for seed in range(3):
                    for f in ft:
                        res.setdefault(f"ft_{f['opt']}_{f['lr']}", []).append(finetune(st, X, y, split, 0.25, seed, **f))
                emit(**{k: v for k, v in cfg.items() if k != "kw"}, at_epoch=ep, loss=float(np.mean(ls)), t=round(time.time() - t0, 1),
                     probe25=float(np.mean([probe(F, y, split, 0.25, s) for s in range(3)])), probe100=probe(F, y, split, 1.0, 0),
                     **{k: float(np.mean(v)) for k, v in res.items()})
if __name__ == "__main__":
    main()
