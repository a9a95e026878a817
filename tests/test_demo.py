"""``cryomonai demo`` end to end (tiny): simulate → pretrain → fine-tune ×2 → evaluate, through the bundle."""

from cryomonai.demo import demo


def test_demo_runs_the_whole_pipeline(tmp_path):
    acc = demo(tmp_path / "demo", n_per_class=5, snr=1.0, pretrain_epochs=1, finetune_epochs=1, batch_size=4, progress=False)
    assert set(acc) == {"pretrained", "random"} and all(0.0 <= a <= 1.0 for a in acc.values())
    out = tmp_path / "demo"
    assert (out / "curves.png").stat().st_size > 10_000
    assert (out / "pretrain" / "models" / "pretrain.pt").is_file()
    for run in ("finetune_pretrained", "finetune_random"):
        assert (out / run / "models" / "finetune_best.pt").is_file()
        assert (out / run / "eval" / "predictions_test.csv").is_file()
