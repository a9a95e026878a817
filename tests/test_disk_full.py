"""A write that runs out of space part-way (a file-size limit, ``RLIMIT_FSIZE``, in a subprocess: the
kernel then fails writes with EFBIG as a full disk fails them with ENOSPC) leaves the previous file
intact, no stray temporary file, and a one-line error naming the file and the space it needed."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from cryomonai.engines.checkpoints import _AtomicDiskSaver
from cryomonai.io import ParticleTable, read_mrc, write_mrc, write_particle_table
from cryomonai.io.atomic import atomic_write

LIMIT = 64_000  # bytes: every previous file is smaller, every new one larger

WRITER = textwrap.dedent("""
    import json, resource, signal, sys
    import numpy as np, pandas as pd, torch
    from cryomonai.errors import CryoDataError
    from cryomonai.engines.checkpoints import _AtomicDiskSaver
    from cryomonai.io import ParticleTable, write_mrc, write_particle_table
    from cryomonai.io.atomic import atomic_write

    folder, limit = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process (as with a full disk)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    def results():  # the grid's results.csv write (GridRunner._append): the whole table at once
        text = pd.DataFrame({"a": range(20_000)}).to_csv(index=False)
        with atomic_write(f"{folder}/results.csv", "w", size=len(text.encode())) as fh:
            fh.write(text)

    n = 10_000
    df = pd.DataFrame({"path": [f"{folder}/vol.mrc"] * n, "label": ["a"] * n, "split": ["train"] * n})
    writes = {
        "checkpoint": lambda: _AtomicDiskSaver(folder, "model.pt")({"w": torch.randn(40_000)}, "model.pt"),
        "star": lambda: write_particle_table(ParticleTable(df, ["a"]), f"{folder}/particles.star", ),
        "mrc": lambda: write_mrc(f"{folder}/vol.mrc", np.ones((32, 32, 32), np.float32)),
        "results": results,
    }
    out = {}
    for name, write in writes.items():
        try:
            write()
            out[name] = "written"
        except CryoDataError as err:
            out[name] = str(err)
    print(json.dumps(out))
""")


def test_writes_that_run_out_of_space_keep_the_previous_file(tmp_path):
    (tmp_path / "vol.mrc").parent.mkdir(exist_ok=True)
    write_mrc(tmp_path / "vol.mrc", np.zeros((8, 8, 8), np.float32))
    _AtomicDiskSaver(tmp_path, "model.pt")({"w": torch.zeros(10)}, "model.pt")
    write_particle_table(ParticleTable(pd.DataFrame({"path": [str(tmp_path / "vol.mrc")], "label": ["a"],
                                                     "split": ["train"]}), ["a"]), tmp_path / "particles.star")
    (tmp_path / "results.csv").write_text("a\n1\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert all(len(b) < LIMIT for b in before.values())

    run = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), str(LIMIT)], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    for name, file in (("checkpoint", "model.pt"), ("star", "particles.star"), ("mrc", "vol.mrc"),
                       ("results", "results.csv")):
        message = outcome[name]
        assert message != "written", name
        assert "\n" not in message and file in message and "ran out of space" in message, message
        assert "it needs" in message and "MB" in message and "previous file is kept" in message, message
    assert "it needs 0.1 MB" in outcome["mrc"] and "it needs 0.2 MB" in outcome["checkpoint"]  # 32³ float32 / 40k floats
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # the previous files, byte for byte, and no stray temporary file
    assert torch.load(tmp_path / "model.pt")["w"].shape == (10,) and read_mrc(tmp_path / "vol.mrc")[0].shape == (8, 8, 8)


@pytest.mark.parametrize("size, expected", [(None, "more than the"), (5_000_000, "it needs 5.0 MB")])
def test_full_disk_message_says_what_was_needed(tmp_path, size, expected):
    import errno

    with pytest.raises(Exception) as err:
        with atomic_write(tmp_path / "x.bin", size=size) as fh:
            fh.write(b"12345")
            fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
    message = str(err.value)
    assert "x.bin" in message and expected in message and "free" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []
