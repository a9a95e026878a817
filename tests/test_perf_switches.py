"""The bundle's speed switches take effect: ``channels_last``, ``amp`` (bf16), ``compile``, ``pin_memory``,
``non_blocking`` (``bundles/cryo_ssl/configs/common.json`` → ``cryomonai.engines.perf`` / ``ssl_iteration``).

Tiny networks (``rb3d`` with 8 channels, 2 input channels so that a channels-last input differs from
a contiguous one), 8³ volumes, one or two steps on CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor, get_track_meta
from monai.data.utils import set_rnd
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.transforms import Compose

from cryomonai.engines import (
    AutocastInferer,
    PrepareBatchMemoryFormat,
    SSLStep,
    TrackMeta,
    native_bf16,
    prepare_network,
    ssl_iteration,
    unwrap_ssl_method,
)
from cryomonai.networks import Classifier, build_encoder
from cryomonai.ssl import build_method
from cryomonai.transforms import paper_views

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "cryo_ssl" / "configs"
CL = torch.channels_last_3d


def _parser(*names: str, device: str = "cpu") -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / n) for n in names])
    parser["device"] = f"$torch.device('{device}')"
    return parser


def _method() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method("moco", build_encoder("rb3d", in_channels=2, channels=8), queue_size=8)


def _views(n_batches: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{f"view_{i}": torch.randn(4, 2, 8, 8, 8, generator=g) for i in range(2)} for _ in range(n_batches)]


def _record_first_conv(module: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of every call of the first Conv3d of ``module``."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv3d))
    conv.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
    return seen


def _is_cl(t: torch.Tensor) -> bool:
    """NDHWC, and not also NCDHW unless the two layouts coincide (1 channel, or 1×1×1 spatial)."""
    same_layouts = t.shape[1] == 1 or t.shape[2:].numel() == 1
    return t.is_contiguous(memory_format=CL) and (same_layouts or not t.is_contiguous())


def _ssl_trainer(method: torch.nn.Module, network: torch.nn.Module, **kwargs) -> SupervisedTrainer:
    return SupervisedTrainer("cpu", 1, _views(), network, torch.optim.Adam(method.parameters(), lr=1e-3), None,
                             iteration_update=ssl_iteration, decollate=False, **kwargs)


# ---- the JSON switches ---------------------------------------------------------------------------


def test_common_switch_defaults_follow_the_device() -> None:
    cpu, cuda = _parser("common.json"), _parser("common.json", device="cuda")
    assert cpu.get_parsed_content("channels_last") is True and cpu.get_parsed_content("memory_format") == CL
    assert cpu.get_parsed_content("compile") is False and cpu.get_parsed_content("num_workers") == 1
    assert 1 <= cuda.get_parsed_content("num_workers") <= 8
    for key in ("pin_memory", "non_blocking"):
        assert cpu.get_parsed_content(key) is False and cuda.get_parsed_content(key) is True, key
    # bf16 autocast where the processor has bf16 units (AVX512-BF16 / AMX), float32 elsewhere; on CUDA
    assert cpu.get_parsed_content("amp") is native_bf16("cpu") and cuda.get_parsed_content("amp") is True
    assert cuda.get_parsed_content("amp_kwargs") == {"dtype": torch.bfloat16}
    assert cpu.get_parsed_content("engine_amp") is False and cuda.get_parsed_content("engine_amp") is True
    assert cpu.get_parsed_content("inferer").enabled is native_bf16("cpu")  # CPU autocast lives in the inferer
    inferer = cuda.get_parsed_content("inferer")
    assert isinstance(inferer, AutocastInferer) and inferer.enabled and inferer.dtype == torch.bfloat16


def test_channels_last_false_gives_contiguous_format() -> None:
    parser = _parser("common.json")
    parser["channels_last"] = False
    assert parser.get_parsed_content("memory_format") == torch.contiguous_format


@pytest.mark.parametrize(
    ("files", "engine", "loaders"),
    [
        (("common.json", "pretrain.json"), "train#trainer", ["train#dataloader"]),
        (("common.json", "finetune.json"), "train#trainer", ["train#dataloader", "validate#dataloader"]),
        (("common.json", "finetune.json"), "validate#evaluator", []),
        (("common.json", "finetune.json", "evaluate.json"), "validate#evaluator", []),
        (("common.json", "inference.json"), "evaluator", ["dataloader"]),
    ],
)
def test_every_engine_and_loader_gets_the_switches(files: tuple[str, ...], engine: str, loaders: list[str]) -> None:
    parser = _parser(*files)
    cfg = parser.get(engine)
    for key in ("amp_kwargs", "non_blocking"):
        assert cfg[key] == f"@{key}", (engine, key)
    # the SSL step autocasts on any device; MONAI's supervised engines on CUDA only (elsewhere the inferer does)
    assert cfg["amp"] == ("@amp" if "pretrain.json" in files else "@engine_amp"), engine
    if "pretrain.json" in files:  # the SSL step converts the views itself (to_kwargs → Tensor.to)
        assert parser.get_parsed_content(f"{engine}#to_kwargs") == {"memory_format": CL}
    else:
        assert isinstance(parser.get_parsed_content(f"{engine}#prepare_batch"), PrepareBatchMemoryFormat)
        assert isinstance(parser.get_parsed_content(f"{engine}#inferer"), AutocastInferer)
    for loader in loaders:
        assert parser.get(loader)["pin_memory"] == "@pin_memory" and parser.get(loader)["num_workers"] == "@num_workers"


def test_pretrain_model_is_channels_last_and_compilable_from_json() -> None:
    parser = _parser("common.json", "pretrain.json")
    parser["network_def"] = {"_target_": "cryomonai.networks.build_encoder", "name": "rb3d", "channels": 8}
    parser["compile"], parser["compile_kwargs"] = True, {"backend": "eager"}
    model = parser.get_parsed_content("model")
    assert isinstance(model, SSLStep) and model._compiled_call_impl is not None  # compiled in place
    weights = [p for p in model.parameters() if p.ndim == 5]
    assert weights and all(_is_cl(p) for p in weights) and any(not p.is_contiguous() for p in weights)


# ---- the switches at work ------------------------------------------------------------------------


def test_channels_last_pretrain_step() -> None:
    method = _method()
    step = prepare_network(SSLStep(method), "cpu", CL)
    assert all(_is_cl(p) for p in method.parameters() if p.ndim == 5)
    seen = _record_first_conv(method.encoder)
    trainer = _ssl_trainer(method, step, to_kwargs={"memory_format": CL})
    trainer.run()
    assert int(method.steps_done) == 1 and math.isfinite(trainer.state.output["loss"])
    assert seen and all(_is_cl(x) and _is_cl(y) for x, y in seen)  # NDHWC in and out of the first conv
    assert all(_is_cl(p) for p in method.parameters() if p.ndim == 5)  # the optimizer step keeps the layout


def test_contiguous_when_channels_last_is_off() -> None:
    method = _method()
    seen = _record_first_conv(method.encoder)
    _ssl_trainer(method, prepare_network(SSLStep(method), "cpu"), to_kwargs={}).run()
    assert seen and all(x.is_contiguous() and y.is_contiguous() for x, y in seen)


def test_bf16_autocast_pretrain_step_on_cpu() -> None:
    method = _method()
    seen = _record_first_conv(method.encoder)
    before = [p.detach().clone() for p in method.encoder.parameters()]
    trainer = _ssl_trainer(method, SSLStep(method), amp=True, amp_kwargs={"dtype": torch.bfloat16})
    trainer.run()
    assert math.isfinite(trainer.state.output["loss"])
    assert seen and all(y.dtype == torch.bfloat16 for _, y in seen)  # the convolutions ran in bf16
    assert all(p.dtype == torch.float32 for p in method.parameters())  # weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, method.encoder.parameters()))  # and were stepped


def test_fp32_when_amp_is_off() -> None:
    method = _method()
    seen = _record_first_conv(method.encoder)
    _ssl_trainer(method, SSLStep(method), amp=False).run()
    assert seen and all(y.dtype == torch.float32 for _, y in seen)


def test_supervised_engines_bf16_and_channels_last_on_cpu() -> None:
    torch.manual_seed(0)
    net = prepare_network(Classifier(build_encoder("rb3d", in_channels=2, channels=8), 3), "cpu", CL)
    seen = _record_first_conv(net)
    g = torch.Generator().manual_seed(0)
    data = [{"image": torch.randn(4, 2, 8, 8, 8, generator=g), "label": torch.tensor([0, 1, 2, 0])}]
    common = dict(prepare_batch=PrepareBatchMemoryFormat(CL), inferer=AutocastInferer(True, torch.bfloat16),
                  decollate=False)
    trainer = SupervisedTrainer("cpu", 1, data, net, torch.optim.SGD(net.parameters(), lr=0.1),
                                torch.nn.CrossEntropyLoss(), **common)
    trainer.run()
    out = trainer.state.output
    assert math.isfinite(out["loss"].item()) and out["pred"].dtype == torch.float32  # bf16 inside, fp32 out
    assert seen and all(_is_cl(x) and y.dtype == torch.bfloat16 for x, y in seen)
    evaluator = SupervisedEvaluator("cpu", data, net, **common)
    evaluator.run()
    assert evaluator.state.output["pred"].shape == (4, 3) and type(evaluator.state.output["image"]) is torch.Tensor


def test_prepare_batch_keeps_other_ranks_and_missing_labels() -> None:
    image, label = PrepareBatchMemoryFormat(CL)({"image": torch.randn(2, 3, 4, 4, 4)}, "cpu")
    assert label is None and _is_cl(image)
    flat, _ = PrepareBatchMemoryFormat(CL)({"image": torch.randn(2, 5)}, "cpu")
    assert flat.is_contiguous()


def test_compiled_ssl_step_trains_and_keeps_its_state_dict() -> None:
    """``compile`` with dynamo's eager backend: the graph capture runs (inductor's C++ build of rb3d
    takes ~35 s on a 2-core CPU, too slow for a unit test; the benchmark on GPU can try it)."""
    method = _method()
    keys = list(SSLStep(method).state_dict())
    step = prepare_network(SSLStep(method), "cpu", CL, compile=True, compile_kwargs={"backend": "eager"})
    assert type(step) is SSLStep and list(step.state_dict()) == keys and unwrap_ssl_method(step) is method
    trainer = SupervisedTrainer("cpu", 1, _views(2), step, torch.optim.Adam(method.parameters(), lr=1e-3), None,
                                iteration_update=ssl_iteration, decollate=False, to_kwargs={"memory_format": CL})
    trainer.run()
    assert int(method.steps_done) == 2 and math.isfinite(trainer.state.output["loss"])


def test_unwrap_finds_the_method_inside_a_torch_compile_wrapper() -> None:
    method = _method()
    assert unwrap_ssl_method(torch.compile(SSLStep(method))) is method


# ---- track_meta: the pretraining views as plain tensors ------------------------------------------


def test_pretrain_views_run_without_metadata_tracking() -> None:
    parser = _parser("common.json", "pretrain.json")
    assert parser.get_parsed_content("track_meta") is False
    transform = parser.get_parsed_content("train#dataset#transform")
    assert isinstance(transform, TrackMeta) and transform.track_meta is False
    assert transform.transform is parser.get_parsed_content("train#transforms")


def _item() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": MetaTensor(torch.randn(1, 16, 16, 16, generator=g), meta={"filename_or_obj": "a.mrc"})}


@pytest.mark.parametrize("track_meta", [False, True])
def test_track_meta_sets_the_views_type_and_restores_the_switch(track_meta: bool) -> None:
    views = TrackMeta(paper_views(n_views=2), track_meta)(_item())
    expected = MetaTensor if track_meta else torch.Tensor
    assert all(type(views[f"view_{i}"]) is expected for i in range(2))
    assert get_track_meta() is True  # MONAI's default is back


def test_track_meta_restores_the_switch_after_an_error() -> None:
    def fail(_: dict) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        TrackMeta(fail)(_item())
    assert get_track_meta() is True


def _draw(transform: Compose, seed: int) -> dict:
    """Views of a fresh item after seeding as RNGState does (global generators too)."""
    torch.manual_seed(0), np.random.seed(0)
    set_rnd(transform, seed)
    return transform(_item())


def test_track_meta_keeps_views_seeded_like_the_bare_pipeline() -> None:
    """``set_rnd`` (MONAI's DataLoader, RNGState) seeds the transforms inside as without the wrapper,
    also through a ``Compose`` around it (what a MONAI ``Dataset`` makes of a single transform)."""
    def views() -> Compose:  # every view cropped and rotated, so the seeds show
        return paper_views(n_views=2, crop_prob=1.0, affine_prob=1.0)

    wrapped, bare = Compose([TrackMeta(views())]), Compose([views()])
    for seed in (7, 8):
        a, b = _draw(wrapped, seed), _draw(bare, seed)
        assert all(torch.equal(a[k], b[k].as_tensor()) for k in ("view_0", "view_1")), seed
        again = _draw(wrapped, seed)
        assert all(torch.equal(a[k], again[k]) for k in ("view_0", "view_1")), seed
    other = _draw(wrapped, 7)  # another seed, other views (some view differs)
    assert not torch.equal(a["view_0"], a["view_1"]) and not all(torch.equal(a[k], other[k]) for k in ("view_0", "view_1"))


# ---- determinism switch ----------------------------------------------------------------------------


@pytest.mark.parametrize("deterministic", [True, False])
def test_deterministic_switch_sets_cudnn_after_seeding(deterministic: bool) -> None:
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    try:
        parser = _parser("common.json")
        parser["deterministic"] = deterministic
        parser.get_parsed_content("initialize")
        assert (cudnn.deterministic, cudnn.benchmark) == (deterministic, not deterministic)
        a = torch.rand(3)
        parser.get_parsed_content("initialize", lazy=False)
        assert torch.equal(a, torch.rand(3))  # seeded either way
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def test_native_bf16_follows_the_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    for avx512_bf16, amx, expected in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert native_bf16("cpu") is expected and native_bf16(torch.device("cpu")) is expected
    assert native_bf16("meta") is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN capped below bf16: float32
    assert native_bf16("cpu") is False
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert native_bf16("cpu") is True
