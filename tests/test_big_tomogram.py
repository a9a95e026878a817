"""Bigger than RAM: extraction and inference's pick dataset on a sparse MRC tomogram whose logical size
exceeds the machine's memory read only the boxes they need. Measured in a subprocess: its peak
resident memory stays under a stated bound (``PEAK_RSS_BOUND``)."""

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from cryomonai.io import read_mrc_header, write_mrc

#: peak RSS of the reading process, bytes: Python + torch + MONAI (~0.6 GB here) and a few boxes
PEAK_RSS_BOUND = 1.5e9
VOXEL = 10.0
PICKS_ZYX = [(100, 500, 700), (320, 2048, 2048), (500, 3000, 1000), (200, 1000, 3500), (600, 3900, 3900)]

READER = textwrap.dedent("""
    import json, re, sys
    import numpy as np
    from cryomonai.data.extract import extract_subtomograms
    from cryomonai.data.picks import particle_dataset

    picks, out = sys.argv[1], sys.argv[2]
    result = extract_subtomograms(picks, out, box=32, progress=False)
    dataset = particle_dataset(picks, box=32)  # what the bundle's inference reads
    peaks = [np.unravel_index(int(np.argmax(np.asarray(item["image"])[0])), (32, 32, 32)) for item in dataset]
    print(json.dumps({"extracted": result.n_extracted, "items": len(dataset),
                      "peaks": [[int(v) for v in p] for p in peaks],
                      # VmHWM: this process's own peak. ru_maxrss is not: after a (v)fork + exec, Linux carries the
                      # parent's peak into it, so a large pytest process would be measured instead
                      "max_rss": int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())[1]) * 1024}))
""")


def _sparse_tomogram(path, shape):
    """An MRC file of ``shape`` (z, y, x) float32 whose data are a hole (sparse), except a bright
    5³ cube at each pick; returns its logical size in bytes."""
    write_mrc(path, np.zeros((2, 2, 2), np.float32), voxel_size=VOXEL)
    header = bytearray(path.read_bytes()[:1024])
    nz, ny, nx = shape
    struct.pack_into("<3i", header, 0, nx, ny, nz)  # nx, ny, nz
    struct.pack_into("<3i", header, 28, nx, ny, nz)  # mx, my, mz (sampling: voxel size = cella / m)
    struct.pack_into("<3f", header, 40, nx * VOXEL, ny * VOXEL, nz * VOXEL)  # cella
    size = 1024 + 4 * nz * ny * nx
    with open(path, "wb") as fh:
        fh.write(bytes(header))
        fh.truncate(size)  # a hole: no disk blocks, reads as zeros
    data = np.memmap(path, dtype=np.float32, mode="r+", offset=1024, shape=shape)
    for z, y, x in PICKS_ZYX:
        data[z - 2:z + 3, y - 2:y + 3, x - 2:x + 3] = 1.0  # allocates only these pages
    data.flush()
    del data
    return size


def read_boxes_in_a_subprocess(tomogram, picks_zyx, folder) -> dict:
    """Extract and build the inference dataset at ``picks_zyx`` of ``tomogram`` in a fresh process (:data:`READER`);
    check every pick came out with its particle centred; return what the process reported (``max_rss``)."""
    picks = folder / "picks.csv"
    pd.DataFrame({"tomogram": [str(tomogram)] * len(picks_zyx), "x": [p[2] for p in picks_zyx],
                  "y": [p[1] for p in picks_zyx], "z": [p[0] for p in picks_zyx]}).to_csv(picks, index=False)
    run = subprocess.run([sys.executable, "-c", READER, str(picks), str(folder / "out")], capture_output=True,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["extracted"] == got["items"] == len(picks_zyx)
    assert all(abs(c - 16) <= 2 for peak in got["peaks"] for c in peak)  # each box holds its particle, centred
    return got


def test_extraction_and_inference_read_only_their_boxes(tmp_path):
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    nz = 640
    ny = nx = 4096
    while 4 * nz * ny * nx < 1.25 * ram:  # logically bigger than this machine's memory (≥ 40 GiB)
        nz *= 2
    tomo = tmp_path / "big.mrc"
    size = _sparse_tomogram(tomo, (nz, ny, nx))
    if os.stat(tomo).st_blocks * 512 > 1e9:
        pytest.skip("this file system does not keep sparse files sparse")
    assert size > ram and size >= 40 * 2**30 and read_mrc_header(tomo).shape == (nz, ny, nx)
    got = read_boxes_in_a_subprocess(tomo, PICKS_ZYX, tmp_path)
    print(f"peak RSS {got['max_rss'] / 1e9:.2f} GB reading a {size / 2**30:.0f} GiB tomogram")
    assert got["max_rss"] < PEAK_RSS_BOUND, f"peak RSS {got['max_rss'] / 1e9:.2f} GB for a {size / 2**30:.0f} GiB tomogram"
