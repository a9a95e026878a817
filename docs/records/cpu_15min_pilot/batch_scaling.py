import time, torch, statistics
from cryomonai.networks import Classifier, build_encoder
torch.manual_seed(0); torch.set_num_threads(1)
fmt=torch.channels_last_3d
net = Classifier(build_encoder("rb3d_bn"), 10).to(memory_format=fmt)
opt = torch.optim.Adam(net.parameters(), 1e-3)
nparam=sum(p.numel() for p in net.parameters()); print("params", nparam)
def step(x,y):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    loss = torch.nn.functional.cross_entropy(out.float(), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for B in (8,16,32,64,128):
    x=torch.randn(B,1,16,16,16).contiguous(memory_format=fmt); y=torch.randint(0,10,(B,))
    for _ in range(3): step(x,y)
    ts=[]
    for _ in range(10):
        t=time.perf_counter(); step(x,y); ts.append(time.perf_counter()-t)
    m=statistics.median(ts); print(B, f"{1e3*m:.1f} ms  {B/m:.0f} samples/s", flush=True)
