import time, torch
torch.set_num_threads(1)
from cryomonai.networks import Classifier, build_encoder
torch.manual_seed(0)
net = Classifier(build_encoder("rb3d_bn"), 10).to(memory_format=torch.channels_last_3d)
opt = torch.optim.Adam(net.parameters(), 1e-3)

print(sum(p.numel() for p in net.parameters()))
x = torch.randn(16, 1, 16, 16, 16).to(memory_format=torch.channels_last_3d); y = torch.randint(0, 10, (16,))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for _ in range(10): step()
t0=time.perf_counter()
for _ in range(40): step()
print("1 thread samples/s", 16*40/(time.perf_counter()-t0))
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as p:
    for _ in range(10): step()
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
