"""zarr 3 check of cryomonai.io.stores/omezarr (the dev venv has zarr 2): an OME-Zarr written by ome-zarr-py
(0.5, zarr 3) read as a local folder, a file:// URL and over a loopback HTTP server; a 500 chunk, a 404 store,
the cache folder with the server stopped, and the server down without it. See README.md."""
import sys, os, tempfile, threading, functools, http.server
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np, zarr
from ome_zarr.writer import write_multiscale
from cryomonai.io.omezarr import read_ome_zarr_levels
from cryomonai.io.stores import CACHE_ENV
from cryomonai.errors import CryoDataError
d = Path(tempfile.mkdtemp())
vol = np.random.rand(40, 96, 96).astype(np.float32)
axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
write_multiscale([vol, vol[::2, ::2, ::2].copy()], zarr.open_group(str(d / "t.zarr"), mode="w"), axes=axes,
                 coordinate_transformations=[[{"type": "scale", "scale": [s] * 3}] for s in (10.0, 20.0)],
                 storage_options={"chunks": (16, 32, 32)})
reqs = []
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=str(d), **k)
    def send_head(self):
        reqs.append(self.path)
        if "fail" in os.environ and "/c/" in self.path: self.send_error(500); return None
        return super().send_head()
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H); threading.Thread(target=srv.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{srv.server_port}/t.zarr"
for loc in (str(d / "t.zarr"), (d / "t.zarr").as_uri(), url):
    lv = read_ome_zarr_levels(loc)
    print([(l.path, l.shape, l.voxel_size) for l in lv])
    box = lv[0].open()[3:20, 10:40, 30:70]
    assert np.array_equal(box, vol[3:20, 10:40, 30:70]), loc
print("chunks", [r for r in reqs if "/c/" in r])
os.environ["fail"] = "1"
try: read_ome_zarr_levels(url)[0].open()[0:4, 0:4, 0:4]; print("NO ERROR on 500 chunk!")
except CryoDataError as e: print("500:", e)
del os.environ["fail"]
try: read_ome_zarr_levels(url.replace("t.zarr", "x.zarr"))
except CryoDataError as e: print("404:", e)
cache = tempfile.mkdtemp(); os.environ[CACHE_ENV] = cache
a = read_ome_zarr_levels(url)[0].open()[0:20, 0:20, 0:20]
srv.shutdown(); srv.server_close()
print("cached files", sum(len(f) for _, _, f in os.walk(cache)))
try: print("offline ok", np.array_equal(read_ome_zarr_levels(url)[0].open()[0:20, 0:20, 0:20], a))
except CryoDataError as e: print("offline:", e)
del os.environ[CACHE_ENV]
try: read_ome_zarr_levels(url)
except CryoDataError as e: print("down:", e)
