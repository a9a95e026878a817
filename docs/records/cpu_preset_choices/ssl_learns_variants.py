import sys, json
exec(open("/tmp/learns.py").read().split("TINY = ")[0])
from cryomonai.transforms import cryo3d_views
views = cryo3d_views(rotation="so3", tilt_range=None, crop_prob=0, lowpass_prob=0, ctf_prob=0, noise_prob=0).set_random_state(0)
variants = json.loads(sys.argv[1])
for name, kw, steps in variants:
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = build_method(name, RB3D(), **kw)
        r = probe(feats(m.encoder)); m.train()
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        t0 = time.time(); g = np.random.default_rng(seed)
        for step in range(steps):
            idx = g.choice(len(x_tr), 16, replace=False)
            vs = [views({"image": x_tr[i]}) for i in idx]
            v = [torch.stack([d[f"view_{k}"] for d in vs]) for k in range(2)]
            out = m.training_step(v); opt.zero_grad(); out["loss"].backward(); opt.step(); m.on_train_step_end(step, steps)
        a = probe(feats(m.encoder))
        print(name, kw, seed, f"random {r:.3f} trained {a:.3f} loss {out['loss'].item():.3f} {time.time()-t0:.1f}s", flush=True)
