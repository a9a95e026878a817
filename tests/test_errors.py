"""Whose fault is it: the error type says it (see :mod:`cryomonai.errors`).

A problem with the user's data is a :class:`CryoDataError`; a value the user set in a
configuration (bundle key, preset, command-line option, argument) is a :class:`ConfigError`; our
own code misusing an internal function is a plain Python exception, not a :class:`CryoError`.
These cases pin the classification for one representative of each kind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryomonai.data import label_fraction_subset, stratified_split
from cryomonai.errors import ConfigError, CryoDataError, CryoError
from cryomonai.io.predictions import check_min_probability
from cryomonai.simulate.imaging import ImagingParams
from cryomonai.simulate.templates import template_radius
from cryomonai.ssl import build_method
from cryomonai.transforms import cryo3d_views


def test_the_two_user_errors_are_siblings() -> None:
    assert issubclass(CryoDataError, CryoError) and issubclass(ConfigError, CryoError)
    assert not issubclass(ConfigError, CryoDataError) and not issubclass(CryoDataError, ConfigError)


# ---- the user's data ----------------------------------------------------------------------------


def test_a_bad_mrc_file_is_a_data_error(tmp_path: Path) -> None:
    from cryomonai.io import read_mrc

    (tmp_path / "notes.mrc").write_text("not a volume")
    with pytest.raises(CryoDataError, match=r"notes\.mrc: ") as err:
        read_mrc(tmp_path / "notes.mrc")
    assert type(err.value) is CryoDataError


def test_a_table_row_without_a_file_is_a_data_error(tmp_path: Path) -> None:
    from cryomonai.io import read_particle_table

    (tmp_path / "t.csv").write_text("path,label\ngone.mrc,a\n")
    with pytest.raises(CryoDataError, match=r"t\.csv, row 1: file not found"):
        read_particle_table(tmp_path / "t.csv")


# ---- a configuration: bundle keys, options, arguments a user sets -------------------------------


def test_a_wrong_bundle_key_value_is_a_config_error() -> None:
    """``encoder`` of the bundle's common.json, resolved as the bundle resolves it."""
    from monai.bundle import ConfigParser

    from cryomonai.pipeline import bundle_configs

    parser = ConfigParser()
    parser.read_config(bundle_configs("pretrain"))
    parser["encoder"] = "rb4d"
    with pytest.raises(RuntimeError) as err:  # MONAI wraps the target's error; the CLI prints its cause
        parser.get_parsed_content("network_def")
    cause = err.value.__cause__
    assert type(cause) is ConfigError and "unknown encoder 'rb4d'" in str(cause), repr(cause)


@pytest.mark.parametrize("call", [
    lambda: stratified_split([0, 1, 0, 1], (0.5, 0.5, 0.5)),
    lambda: cryo3d_views(rotation="xyz"),
    lambda: ImagingParams(noise_model="loud"),
    lambda: check_min_probability(1.5),
], ids=["split fractions", "views rotation", "noise model", "min_probability"])
def test_a_bad_option_value_is_a_config_error(call) -> None:
    with pytest.raises(ConfigError) as err:
        call()
    assert "\n" not in str(err.value) and err.value.fix


def test_a_checkpoint_that_does_not_fit_the_configured_encoder_is_a_config_error(tmp_path: Path) -> None:
    """The checkpoint is fine; the run's ``--encoder`` does not match it (the fix is the option)."""
    from cryomonai.engines.checkpoints import load_pretrained_encoder
    from cryomonai.networks import Classifier, build_encoder

    torch.save({"model": {}, "run_info": {"encoder": "resnet10"}}, tmp_path / "resnet.pt")
    with pytest.raises(ConfigError, match="resnet.pt: was trained with encoder 'resnet10'"):
        load_pretrained_encoder(Classifier(build_encoder("rb3d", channels=8), 2), tmp_path / "resnet.pt", encoder="rb3d")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CryoDataError, match="junk.pt: not a readable PyTorch checkpoint"):
        load_pretrained_encoder(Classifier(build_encoder("rb3d", channels=8), 2), tmp_path / "junk.pt")


# ---- our own code misusing an internal function: a plain exception with its traceback -----------


@pytest.mark.parametrize("call, kind", [
    (lambda: label_fraction_subset(object(), 0.5), TypeError),
    (lambda: build_method("moco", torch.nn.Linear(2, 2)), TypeError),
    (lambda: template_radius(np.ones((4, 4))), ValueError),
], ids=["dataset without data", "encoder without num_features", "2D template"])
def test_an_internal_misuse_is_not_a_user_error(call, kind) -> None:
    with pytest.raises(kind) as err:
        call()
    assert not isinstance(err.value, CryoError)


def test_a_bundle_run_ends_a_user_error_in_one_line(tmp_path: Path) -> None:
    """``python -m monai.bundle run inference`` (the README's step 4): a user error is one line on stderr
    (the bundle's ``+initialize`` installs :func:`cryomonai.errors.one_line_errors`), not MONAI's traceback."""
    import subprocess
    import sys

    configs = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs"
    run = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
         f"['{configs}/common.json','{configs}/inference.json']", "--bundle_root", str(configs.parent),
         "--checkpoint", "simclr_rb3d_bn_16_classifier", "--encoder", "rb3d_bn", "--infer_table",
         str(tmp_path / "nowhere.star"), "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (f"cryomonai: {tmp_path / 'nowhere.star'}: particle table not found"
                                                   " — fix: check the path (a .star or .csv file)")
    assert not (tmp_path / "out").exists()


def test_one_line_errors_keeps_the_traceback_of_anything_else(capsys, monkeypatch) -> None:
    import sys

    from cryomonai.errors import one_line_errors

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc[1]))
    one_line_errors()
    one_line_errors()  # once is enough: not wrapped twice
    sys.excepthook(ValueError, ValueError("ours?"), None)
    err = ConfigError("a.json", "bad", "good")
    sys.excepthook(RuntimeError, RuntimeError("wrapped"), None)
    wrapped = RuntimeError("MONAI's wrapper")
    wrapped.__cause__ = err
    sys.excepthook(RuntimeError, wrapped, None)
    assert [str(e) for e in seen] == ["ours?", "wrapped"]
    assert capsys.readouterr().err == "cryomonai: a.json: bad — fix: good\n"


def test_a_bundle_run_refuses_a_key_its_configs_do_not_have(tmp_path: Path) -> None:
    """``python -m monai.bundle run pretrain … --epoch 5``: MONAI's runner would take ``epoch`` as a new key and
    train for the default epochs; the bundle's ``initialize`` (:func:`cryomonai.pipeline.check_command_line`)
    stops it in one line naming the key it meant, before anything is simulated or written."""
    import subprocess
    import sys

    configs = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs"
    run = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "pretrain", "--config_file",
         f"['{configs}/common.json','{configs}/pretrain.json']", "--bundle_root", str(configs.parent),
         "--dataset_dir", str(tmp_path / "data"), "--ckpt_dir", str(tmp_path / "models"), "--epoch", "5"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(
        "cryomonai: --epoch: is not a key of the bundle's 'pretrain' configs — fix: did you mean 'epochs'")
    assert not (tmp_path / "data").exists() and not (tmp_path / "models").exists()


def test_check_command_line_reads_keys_as_monai_bundle_run_takes_them(tmp_path: Path) -> None:
    """python-fire's reading of the command line, as MONAI's runner gets it: what the runner takes for itself
    (``--workflow_type``, ``--tracking`` and its ``--experiment_name``) is no bundle key; a key is refused as
    fire passes it (``--non_blocking`` alone is fire's ``n_blocking=False``)."""
    from cryomonai.pipeline import bundle_configs, check_command_line

    main = str(Path("site-packages") / "monai" / "bundle" / "__main__.py")
    files = str(bundle_configs("finetune"))
    check_command_line([main, "run", "finetune", "--config_file", files, "--epochs=3", "--network_def#channels", "8",
                        "--network_def::norm", "batch", "--amp", "--noprogress", "--bundle-root", ".", "--lr", "-0.1",
                        "--workflow_type", "train", "--tracking", "mlflow", "--experiment_name", "e1", "--", "--verbose"])
    check_command_line([main, "run", "--config_file", files, "finetune", "--lr", "0.1"])  # run id after the flags
    for argv, message in (
        ([main, "run", "--config_file", files, "finetune", "--lr_max", "0.1"],
         r"^--lr_max: is not a key of the bundle's 'finetune' configs"),
        ([main, "run", "finetune", "--config_file", files, "--experiment_name", "e1"], r"^--experiment_name: "),
        ([main, "run", "finetune", "--config_file", files, "--non_blocking"], r"^--n_blocking: .*did you mean 'non_blocking'"),
        ([main, "run", "finetune", "--config_file", files, "-e", "5"], r"^-e: short flags are not read"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_command_line(argv)
    args = tmp_path / "args.json"
    args.write_text('{"epochs": 2, "warmup": 1}')
    with pytest.raises(ConfigError, match=r"^--warmup: "):  # keys of --args_file are checked too
        check_command_line([main, "run", "finetune", "--config_file", files, "--args_file", str(args)])
    check_command_line(["cryomonai", "finetune", "--epoch", "5"])  # not MONAI's runner: the cryomonai command checks its own
    check_command_line([main, "verify_metadata", "--epoch", "5"])
