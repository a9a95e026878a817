import time, torch, statistics
from cryomonai.networks import Classifier, build_encoder
torch.manual_seed(0)
def make():
    torch.manual_seed(0)
    net = Classifier(build_encoder("rb3d_bn"), 10).to(memory_format=torch.channels_last_3d)
    return net, torch.optim.Adam(net.parameters(), 1e-3)
x = torch.randn(16, 1, 16, 16, 16).to(memory_format=torch.channels_last_3d); y = torch.randint(0, 10, (16,))
def step(net, opt):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
res = {}
for name in ("eager", "compiled", "eager2", "compiled2"):
    net, opt = make()
    if name.startswith("compiled"):
        net = torch.compile(net)
    t0 = time.perf_counter()
    for _ in range(5): step(net, opt)
    warm = time.perf_counter() - t0
    ts = []
    for r in range(5):
        t0 = time.perf_counter()
        for _ in range(20): step(net, opt)
        ts.append(16 * 20 / (time.perf_counter() - t0))
    res[name] = statistics.median(ts)
    print(name, f"warm-up {warm:.1f} s, {res[name]:.0f} samples/s", flush=True)
