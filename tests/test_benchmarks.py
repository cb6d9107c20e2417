"""The benchmark scripts run, and compare like with like (tiny synthetic data, CPU)."""

import importlib.util

import pytest

from course_lib import config
from course_lib.engine import DeviceData
from course_lib.problems import brightest_channel_images


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, config.repo_root() / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airbench_speed_compares_course_lib_and_torch_on_identical_runs(monkeypatch, capsys):
    bench = load_script("airbench_speed")

    def tiny(train_per_class, test_per_class, device):
        train_data = DeviceData.from_numpy(*brightest_channel_images(96, seed=0), device="cpu")
        test = DeviceData.from_numpy(*brightest_channel_images(48, seed=1), device="cpu", stats=train_data.stats)
        return {"train": train_data, "test": test}

    monkeypatch.setattr(bench, "load", tiny)
    rows = bench.main(["--runs", "1", "--epochs", "2", "--widths", "8", "8", "8", "--batch-size", "32",
                       "--lr", "0.05", "0.1", "--tta", "1"])  # fmt: skip
    assert [(r["lr"], r["optimizer"]) for r in rows] == [(0.05, "course_lib"), (0.05, "torch"),
                                                         (0.1, "course_lib"), (0.1, "torch")]  # fmt: skip
    for ours, theirs in (rows[0:2], rows[2:4]):
        # same seed, same batches, bit-exact optimizers: the same model, so the same accuracy
        assert ours["test_loss"] == theirs["test_loss"] and ours["test_acc"] == theirs["test_acc"]
        assert 0 < ours["train_s"] <= ours["total_s"]
    out = capsys.readouterr().out
    assert "ratio" in out and "0.05" in out
    with pytest.raises(SystemExit):
        bench.main(["--tta", "5"])
    with pytest.raises(SystemExit):
        bench.main(["--runs", "0"])
    assert "--runs, --epochs and --batch-size must be at least 1" in capsys.readouterr().err


def test_text_loop_benchmark_times_equal_work_in_both_loops(tmp_path, monkeypatch, capsys):
    bench = load_script("text_loop")
    from course_lib.engine.text import load_corpus, text_on_device

    path = tmp_path / "verse.txt"
    path.write_text("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 20)

    def tiny(context, device):
        corpus = load_corpus(path)
        return text_on_device(corpus, context, device="cpu")["train"], corpus.vocab_size

    monkeypatch.setattr(bench, "load", tiny)
    rows = bench.main(["--runs", "2", "--steps", "3", "--context", "16", "--batch-size", "4"])
    assert [r["loop"] for r in rows] == ["course_lib", "plain", "plain", "course_lib"]
    assert all(r["tokens_per_s"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "same losses step for step in both loops: yes" in out and "ratio" in out
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])
