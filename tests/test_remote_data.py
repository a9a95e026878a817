"""Data where it lives: OME-Zarr tomograms and copick projects over HTTP (and ``file://``), read by chunks.

A loopback HTTP server (Python's ``http.server``, started by each test on 127.0.0.1, port 0) serves a
temporary folder holding an OME-Zarr pyramid written by the OME-Zarr tests' writer and a copick project
built with copick's own API. Extraction over HTTP must give the very bytes extraction from the same
local data gives; a small extraction must fetch only the chunks its boxes touch; with a cache folder
a second read works with the server stopped; a refused connection, a missing array, a failing chunk
and a voxel size the store lacks are one-line :class:`~cryomonai.errors.CryoDataError`s.
"""

from __future__ import annotations

import http.server
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryomonai.data.extract import extract_subtomograms, read_picks
from cryomonai.errors import ConfigError, CryoDataError
from cryomonai.io import read_mrc, tomogram_levels
from cryomonai.io.stores import CACHE_ENV
from cryomonai.io.table import ParticleTable, write_particle_table
from cryomonai.simulate.tomogram import simulate_tomogram

CLASSES = ("1bxn", "3j9i", "1s3x")
SHAPE = (40, 96, 96)  # level 0 in (16, 32, 32) chunks: 3 × 3 × 3 = 27 chunks
CHUNK = re.compile(r"\.zarr/[^/]+/\d+[./]\d+[./]\d+$")  # a chunk key of a level ("0/1.2.0" or "0/1/2/0")


class Server:
    """A loopback HTTP server of ``folder`` in a thread; ``requests`` lists the paths asked for."""

    def __init__(self, folder: Path, fail: Callable[[str], int | None] = lambda path: None) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def send_head(self):  # noqa: ANN202 - http.server's own hook
                server.requests.append(self.path)
                status = fail(self.path)
                if status is not None:
                    self.send_error(status)
                    return None
                return super().send_head()

            def log_message(self, *args) -> None:  # keep pytest's output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(folder, fail=None)`` starts a :class:`Server`; all are stopped after the test."""
    started: list[Server] = []

    def start(folder: Path, fail: Callable[[str], int | None] | None = None) -> Server:
        started.append(Server(folder, fail) if fail else Server(folder))
        return started[-1]

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A simulated tomogram as an OME-Zarr pyramid in ``site/tomogram.zarr`` and its picks (10 Å voxels)."""
    from test_omezarr import write_ome_zarr

    root = tmp_path_factory.mktemp("remote")
    star = simulate_tomogram(root / "t", SHAPE, n_particles=10, snr=math.inf, classes=CLASSES, box=24,
                             imaging=dict(apply_ctf=False, tilt_range=None))
    volume, voxel = read_mrc(star.parent / "tomogram.mrc")
    site = root / "site"
    write_ome_zarr(site / "tomogram.zarr", volume, voxel)
    return {"root": root, "star": star, "site": site, "store": site / "tomogram.zarr"}


def _picks(data: dict, tomogram: str, out: Path, rows: slice = slice(None)) -> Path:
    """The simulator's picks (``rows`` of them), every one in ``tomogram`` (a path or URL)."""
    table = read_picks(data["star"])
    df = table.df.iloc[rows].assign(tomogram=tomogram).drop(columns=["path"], errors="ignore")
    return write_particle_table(ParticleTable(df, table.class_names), out)


def _boxes(result) -> dict[tuple, np.ndarray]:
    """The extracted subtomograms by pick position."""
    return {(r.x, r.y, r.z): read_mrc(r.path)[0] for r in read_picks(result.table).df.itertuples()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key  # bit-identical


def test_extraction_over_http_equals_local_extraction(data: dict, serve, tmp_path: Path) -> None:
    server = serve(data["site"])
    local = extract_subtomograms(_picks(data, str(data["store"]), tmp_path / "l.csv"), tmp_path / "local",
                                 box=16, progress=False)
    remote = extract_subtomograms(_picks(data, f"{server.url}/tomogram.zarr", tmp_path / "r.csv"), tmp_path / "http",
                                  box=16, progress=False)
    assert remote.n_extracted == local.n_extracted > 0 and remote.voxel_size == local.voxel_size
    _assert_same(_boxes(remote), _boxes(local))
    assert set(read_picks(remote.table).df["tomogram"]) == {f"{server.url}/tomogram.zarr"}  # the URL kept as given
    coarse = extract_subtomograms(_picks(data, f"{server.url}/tomogram.zarr", tmp_path / "r.csv"),
                                  tmp_path / "http20", box=8, voxel_size=20.0, progress=False)
    _assert_same(_boxes(coarse), _boxes(extract_subtomograms(_picks(data, str(data["store"]), tmp_path / "l.csv"),
                                                              tmp_path / "local20", box=8, voxel_size=20.0,
                                                              progress=False)))


def test_a_small_extraction_fetches_only_the_chunks_it_needs(data: dict, serve, tmp_path: Path) -> None:
    """One 16-voxel box at (x, y, z) = (48, 48, 20): z 12–27 spans z-chunks 0 and 1; y, x 40–55 lie in chunk 1."""
    server = serve(data["site"])
    picks = tmp_path / "one.csv"
    pd.DataFrame({"tomogram": [f"{server.url}/tomogram.zarr"], "x": [48], "y": [48], "z": [20]}).to_csv(picks,
                                                                                                     index=False)
    result = extract_subtomograms(picks, tmp_path / "out", box=16, progress=False)
    assert result.n_extracted == 1
    level0 = tomogram_levels(data["store"])[0].level  # "0" (or "s0", as the writer names it)
    chunks = sorted(re.sub(r"[/.]", ".", p.split("/tomogram.zarr/")[1]) for p in server.requests if CHUNK.search(p))
    assert chunks == [f"{level0}.0.1.1", f"{level0}.1.1.1"], server.requests  # 2 of level 0's 27, none of level 1's
    np.testing.assert_array_equal(read_mrc(Path(read_picks(result.table).df["path"][0]))[0].shape, (16, 16, 16))


def test_pretraining_and_inference_datasets_read_urls(data: dict, serve, tmp_path: Path) -> None:
    """Pick-free pretraining patches are the tomogram's own voxels; the inference dataset's boxes match local ones."""
    import torch

    from cryomonai.data.picks import particle_dataset
    from cryomonai.data.tomo_patches import TomogramPatchDataset

    server = serve(data["site"])
    url = f"{server.url}/tomogram.zarr"
    volume = np.asarray(read_mrc(data["star"].parent / "tomogram.mrc")[0])
    torch.manual_seed(0)
    patches = TomogramPatchDataset([url], box=16, samples_per_volume=2, queue_length=4, patches_per_epoch=2)
    for i in range(2):
        item = patches[i]
        z0, y0, x0, z1, y1, x1 = (int(v) for v in item["location"])
        assert item["tomogram"] == url
        np.testing.assert_array_equal(np.asarray(item["image"][0]), volume[z0:z1, y0:y1, x0:x1])
    remote = particle_dataset(read_picks(_picks(data, url, tmp_path / "r.csv")), box=16)
    local = particle_dataset(read_picks(_picks(data, str(data["store"]), tmp_path / "l.csv")), box=16)
    assert len(remote) == len(local) > 0
    for i in range(len(local)):
        assert np.array_equal(np.asarray(remote[i]["image"]), np.asarray(local[i]["image"]))


def test_file_urls_work_as_local_paths(data: dict, tmp_path: Path) -> None:
    local = extract_subtomograms(_picks(data, str(data["store"]), tmp_path / "l.csv"), tmp_path / "local",
                                 box=16, progress=False)
    url = data["store"].resolve().as_uri()  # file:///…/tomogram.zarr
    remote = extract_subtomograms(_picks(data, url, tmp_path / "f.csv"), tmp_path / "file", box=16, progress=False)
    _assert_same(_boxes(remote), _boxes(local))
    assert [lv.voxel_size for lv in tomogram_levels(url)] == [10.0, 20.0]


def test_a_cache_folder_fills_and_serves_with_the_server_stopped(data: dict, serve, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    server = serve(data["site"])
    picks = _picks(data, f"{server.url}/tomogram.zarr", tmp_path / "r.csv")
    first = extract_subtomograms(picks, tmp_path / "online", box=16, progress=False)
    cached = [f for f in cache.rglob("*") if f.is_file()]
    assert len(cached) >= 4, cached  # metadata + chunks
    n_requests = len(server.requests)
    server.stop()
    second = extract_subtomograms(picks, tmp_path / "offline", box=16, progress=False)  # from the cache alone
    _assert_same(_boxes(second), _boxes(first))
    assert len(server.requests) == n_requests
    monkeypatch.delenv(CACHE_ENV)
    with pytest.raises(CryoDataError, match="cannot connect"):  # without the cache the server is needed
        extract_subtomograms(picks, tmp_path / "uncached", box=16, progress=False)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and err.value.__suppress_context__, text  # one line, no chained traceback
    return text


def test_an_unreachable_server_is_one_line(data: dict, serve, tmp_path: Path) -> None:
    server = serve(data["site"])
    server.stop()  # nothing listens on its port any more: connection refused
    url = f"{server.url}/tomogram.zarr"
    with pytest.raises(CryoDataError) as err:
        tomogram_levels(url)
    text = _one_line(err)
    assert text.startswith(url) and "cannot connect" in text and "fix: check the URL and that the server is up" in text
    with pytest.raises(CryoDataError, match=r"row 1: tomogram http://127\.0\.0\.1:\d+/tomogram\.zarr: cannot connect"):
        extract_subtomograms(_picks(data, url, tmp_path / "r.csv"), tmp_path / "out", box=16, progress=False)


def test_missing_stores_arrays_and_failing_chunks_are_one_line(data: dict, serve, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "tomogram.zarr").symlink_to(data["store"], target_is_directory=True)
    server = serve(site, fail=lambda path: 500 if CHUNK.search(path) else 404 if "/1/.zarray" in path else None)
    with pytest.raises(CryoDataError, match="not a readable Zarr group") as err:  # 404 for the whole store
        tomogram_levels(f"{server.url}/elsewhere.zarr")
    _one_line(err)
    with pytest.raises(CryoDataError, match=r"level '1' is unreadable") as err:  # 404 for one level's array
        tomogram_levels(f"{server.url}/tomogram.zarr")
    _one_line(err)
    server = serve(site, fail=lambda path: 500 if CHUNK.search(path) else None)
    picks = _picks(data, f"{server.url}/tomogram.zarr", tmp_path / "r.csv")
    failing = r"tomogram\.zarr/0: voxels cannot be read \(ClientResponseError: 500"
    with pytest.raises(CryoDataError, match=failing) as err:
        extract_subtomograms(picks, tmp_path / "out", box=16, progress=False)  # never a silent zero box
    _one_line(err)
    with pytest.raises(CryoDataError, match="MRC file at a URL"):
        tomogram_levels(f"{server.url}/tomogram.mrc")


@pytest.fixture(scope="module")
def project(data: dict) -> dict:
    """A two-run copick project (local overlay) and a copy of its config reading it over ``url`` (set per test)."""
    pytest.importorskip("copick")
    from conftest import build_copick_project

    root = data["root"]
    stars = {"TS_1": data["star"], "TS_2": simulate_tomogram(root / "t2", SHAPE, n_particles=8, snr=math.inf,
                                                             classes=CLASSES, box=24, seed=2,
                                                             imaging=dict(apply_ctf=False, tilt_range=None))}
    return {"config": build_copick_project(root / "project", stars, CLASSES), "folder": root / "project"}


def _remote_config(project: dict, url: str, folder: Path) -> Path:
    """The project's config with ``static_root`` = ``url`` (read-only) and an empty local overlay."""
    conf = json.loads(project["config"].read_text())
    conf.update(static_root=url, overlay_root=f"local://{folder / 'overlay'}", overlay_fs_args={"auto_mkdir": True})
    path = folder / "remote_config.json"
    path.write_text(json.dumps(conf))
    return path


def test_a_copick_project_over_http_reads_and_extracts_as_the_local_one(project: dict, serve, tmp_path: Path) -> None:
    from cryomonai.io.copick import RUN, read_copick_picks

    server = serve(project["folder"])
    remote = read_copick_picks(_remote_config(project, f"{server.url}/overlay", tmp_path))
    local = read_copick_picks(project["config"])
    assert len(remote) == len(local) == 18
    columns = ["label", RUN, "x", "y", "z"]
    pd.testing.assert_frame_equal(remote.df[columns], local.df[columns])
    assert set(remote.df["tomogram"]) == {f"{server.url}/overlay/ExperimentRuns/{r}/VoxelSpacing10.000/wbp.zarr"
                                          for r in ("TS_1", "TS_2")}
    _assert_same(_boxes(extract_subtomograms(remote, tmp_path / "http", box=16, progress=False)),
                 _boxes(extract_subtomograms(local, tmp_path / "local", box=16, progress=False)))
    lacking = r"no tomogram of type wbp at voxel spacing 7\.0 Å.*\(10\.0, 'wbp'\)"  # the voxel sizes it has
    with pytest.raises(ConfigError, match=lacking) as err:  # the voxel size asked for
        read_copick_picks(_remote_config(project, f"{server.url}/overlay", tmp_path), voxel_size=7.0, tomo_type="wbp")
    assert "\n" not in str(err.value)


def test_the_remote_data_howto_runs_against_a_file_url(data: dict, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/howto/remote_data.md's Python example, as written but with its URL a ``file://`` one, cannot rot."""
    page = Path(__file__).resolve().parents[1] / "docs" / "howto" / "remote_data.md"
    (block,) = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    code, n = re.subn(r'^url = "[^"]*"', f'url = "{data["store"].resolve().as_uri()}"', block, flags=re.M)
    assert n == 1, "the example no longer sets url = \"…\" on one line"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(page), "exec"), scope)  # noqa: S102 - our own documentation
    assert scope["result"].n_extracted == 2 and scope["result"].voxel_size == 20.0
    assert len(list((tmp_path / "subtomograms_remote" / "subtomograms").glob("*.mrc"))) == 2
