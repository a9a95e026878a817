"""The ``cryomonai`` command line: every command's ``--help``; the bundle commands (``pretrain``,
``finetune``, ``evaluate``, ``infer``, ``embed``) through one function, with overlays chosen by
``--method``/``--encoder`` and any bundle key overridable (``#`` in flag names too); configuration
mistakes as one ``cryomonai: …`` line."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from cryomonai import cli

BUNDLE_COMMANDS = {"pretrain": "pretrain", "finetune": "finetune", "evaluate": "evaluate", "infer": "inference",
                   "embed": "embed"}


def _main(monkeypatch, capfd, *argv: str) -> tuple[int, str, str]:
    """``cryomonai argv…`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["cryomonai", *argv])
    monkeypatch.setenv("PAGER", "cat")
    code = 0
    try:
        cli.main()
    except SystemExit as stop:
        code = stop.code or 0
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_help_names_the_command_and_its_options_and_runs_nothing(name, monkeypatch, capfd, tmp_path):
    import cryomonai.experiment.grid
    import cryomonai.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("--help ran the command")

    monkeypatch.setattr(cryomonai.pipeline, "run_bundle", refuse)
    monkeypatch.setattr(cryomonai.experiment.grid, "run_grid", refuse)
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(monkeypatch, capfd, name, "--help")
    usage = out + err  # fire writes help to stderr
    assert code == 0 and f"cryomonai {name}" in usage, usage[-2000:]
    for param in inspect.signature(cli.COMMANDS[name]).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            continue
        flag = f"--{param.name}" if param.default is not param.empty else param.name.upper()
        assert flag in usage, f"{flag} missing from `cryomonai {name} --help`"
    assert list(tmp_path.iterdir()) == []  # nothing simulated, trained or written


@pytest.mark.parametrize("command", sorted(BUNDLE_COMMANDS))
def test_every_bundle_command_goes_through_one_function(command, monkeypatch):
    seen = {}

    def record(run_id, method=None, encoder=None, distributed=False, dry_run=False, log_file=None, **keys):
        seen.update(run_id=run_id, encoder=encoder, keys=keys)

    monkeypatch.setattr(cli, "_bundle", record)
    positional = ("t.star", "simclr_rb3d_bn_16_classifier") if command in ("infer", "embed") else ()
    cli.COMMANDS[command](*positional, encoder="rb3d_bn", epochs=3, **{"network_def#channels": 8})
    assert seen["run_id"] == BUNDLE_COMMANDS[command] and seen["encoder"] == "rb3d_bn"
    assert seen["keys"]["epochs"] == 3 and seen["keys"]["network_def#channels"] == 8


def test_dry_run_prints_the_bundle_command_with_overlays_and_overrides(monkeypatch, capfd):
    code, out, err = _main(monkeypatch, capfd, "pretrain", "--method", "simclr", "--encoder", "rb3d_bn", "--epochs", "5",
                           "--ssl_method#temperature", "0.2", "--out", "runs/x", "--dry_run")
    assert code == 0, err
    assert out.startswith("python -m monai.bundle run pretrain --config_file \"['")
    for part in ("configs/common.json'", "configs/pretrain.json'", "configs/methods/simclr.json'",
                 "configs/encoders/rb3d_bn.json'", "--method simclr", "--encoder rb3d_bn", "--epochs 5",
                 "--ssl_method#temperature 0.2", "--ckpt_dir runs/x/models", "--output_dir runs/x/eval"):
        assert part in out, part
    code, out, _ = _main(monkeypatch, capfd, "finetune", "--distributed", "--dry_run")
    assert code == 0 and "configs/multi_gpu_finetune.json'" in out and "--pretrained runs/pretrain/models/pretrain.pt" in out
    code, out, _ = _main(monkeypatch, capfd, "infer", "t.star", "simclr_rb3d_bn_16_classifier", "--device", "cpu",
                         "--voxel_size", "20", "--dry_run")
    assert code == 0 and "--device '$torch.device('\"'\"'cpu'\"'\"')'" in out and "--infer_voxel_size 20" in out, out


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "--method", "simcl"], "--method simcl: the bundle has no method 'simcl' — fix: use one of: moco, simclr"),
    (["finetune", "--encoder", "rb4d"], "--encoder rb4d: the bundle has no encoder 'rb4d'"),
    (["finetune", "--epoch", "1"], "--epoch: is not a key of the bundle's 'finetune' configs — fix: did you mean 'epochs'"),
    (["pretrain", "--ssl_method#temperature#x", "1"], "--ssl_method#temperature#x: is not a key"),
    (["infer", "t.star", "c.pt", "--nosuchkey", "1"], "--nosuchkey: is not a key of the bundle's 'inference' configs"),
    (["infer", "t.star", "c.pt", "--encoder", "rb3d_bn", "-v", "20"], "-v: short flags are not read by this command"),
    (["simulate", "--snr", "abc"], "--snr abc: is not a number"),
])
def test_configuration_mistakes_are_one_line(argv, message, monkeypatch, capfd, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(monkeypatch, capfd, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cryomonai: ") and message in lines[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_pretrain_finetune_evaluate_infer_from_the_command_line(monkeypatch, capfd, tmp_path):
    """A tiny real chain; the overrides land: ``--ssl_method#queue_size 8`` is MoCo's queue, ``--epochs 1``
    the fine-tuning's (its trainer stops after 1 epoch, not finetune.json's 50)."""
    from cryomonai.simulate.dataset import simulate_dataset

    monkeypatch.chdir(tmp_path)
    simulate_dataset(tmp_path / "data", n_per_class=6, snr=math.inf, box=16, classes=("1bxn", "1qvr", "3cf3"), seed=0,
                     workers=0, progress=False)
    small = ["--dataset_dir", "data", "--simulate", "false", "--box", "16", "--batch_size", "4", "--progress", "false",
             "--network_def#channels", "4", "--network_def#norm", "batch"]
    code, out, err = _main(monkeypatch, capfd, "pretrain", "--method", "moco", "--epochs", "1", "--ssl_method#queue_size",
                           "8", "--out", "pre", *small)
    assert code == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == "pre/models/pretrain.pt"  # what fire prints last (MONAI logs to stdout)
    ckpt = torch.load(tmp_path / "pre" / "models" / "pretrain.pt", weights_only=False, map_location="cpu")
    assert ckpt["model"]["queue"].shape[0] == 8

    code, out, err = _main(monkeypatch, capfd, "finetune", "--pretrained", "pre/models/pretrain.pt", "--epochs", "1",
                           "--out", "ft", *small)
    assert code == 0, err[-3000:]
    final = torch.load(tmp_path / "ft" / "models" / "finetune_final.pt", weights_only=False, map_location="cpu")
    assert final["trainer"]["max_epochs"] == 1 and final["trainer"]["iteration"] == final["trainer"]["epoch_length"]
    assert out.strip().splitlines()[-1] == "ft/models/finetune_best.pt" and (tmp_path / "ft/models/finetune_best.pt").is_file()

    code, out, err = _main(monkeypatch, capfd, "evaluate", "--out", "ft", *small)
    assert code == 0, err[-3000:]
    assert (tmp_path / "ft" / "eval" / "predictions_test.csv").is_file()

    code, out, err = _main(monkeypatch, capfd, "infer", "data/particles.star", "ft/models/finetune_best.pt", "--box", "16",
                           "--out", "pred", "--progress", "false", "--network_def#channels", "4",
                           "--network_def#norm", "batch", "--embedding_map", "pca")
    assert code == 0, err[-3000:]
    import starfile

    assert len(starfile.read(tmp_path / "pred" / "predictions.star", always_dict=True)["particles"]) == 18


@pytest.mark.parametrize("argv, message", [
    (["infer", "t.star", "c.pt", "--edge", "clip"], "--edge clip: is not one of the choices — fix: use one of: report, pad, error"),
    (["embed", "t.star", "c.pt", "--method", "dbscan"], "--method dbscan: is not one of the choices"),
    (["embed", "t.star", "c.pt", "--embedding_map", "umap"], "--embedding_map umap: is not one of the choices"),
    (["extract", "--picks", "p.star", "--out", "x", "--edge", "clip"], "--edge clip: is not one of the choices"),
    (["simulate-tomogram", "--shape", "12,a,3"], "--shape 12,a,3: is not three whole numbers"),
])
def test_bad_choices_are_configuration_errors(argv, message, monkeypatch, capfd, tmp_path):
    test_configuration_mistakes_are_one_line(argv, message, monkeypatch, capfd, tmp_path)
