"""The study's store under hostile but realistic use: two writers, another configuration, a
SIGKILL mid-write, duplicates, non-finite numbers, and the command line's one-line errors."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from course_lib import study
from course_lib.engine import DeviceData
from course_lib.files import FileLock

# the same tiny study in this process and in the child processes below
_SETUP = textwrap.dedent("""
    import dataclasses

    import numpy as np
    from course_lib import study
    from course_lib.engine import DeviceData

    def tiny_data():
        rng = np.random.default_rng(0)

        def split(n):
            labels = rng.integers(0, 10, n)
            images = rng.integers(0, 80, (n, 32, 32, 3)).astype(np.uint8)
            for i, c in enumerate(labels):
                images[i, 3 * c : 3 * c + 3] += 150
            return images, labels

        train = DeviceData.from_numpy(*split(40), device="cpu")
        return {"train": train, "val": DeviceData.from_numpy(*split(20), device="cpu", stats=train.stats),
                "test": DeviceData.from_numpy(*split(20), device="cpu", stats=train.stats)}

    def tiny_config(**changes):
        cfg = study.StudyConfig(mode="test", model="small_cnn", model_kwargs={"widths": (4, 4, 4)}, epochs=1,
                                batch_size=20, final_seeds=2, target_accuracy=0.2, augment=False,
                                optimizers=("SGD", "Adam"), lr_grids={"SGD": (0.01, 0.3), "Adam": (1e-4, 1e-2)},
                                grid_extensions=0)
        return dataclasses.replace(cfg, **changes) if changes else cfg
""")
_ns: dict = {}
exec(_SETUP, _ns)
tiny_data, tiny_config = _ns["tiny_data"], _ns["tiny_config"]
N_RUNS = 8  # 2 optimizers x 2 rates (search) + 2 optimizers x 2 fresh seeds (final)


@pytest.fixture(scope="module")
def data():
    return tiny_data()


def _quiet(*args):
    pass


def _run(cfg, out, data, **kwargs):
    return study.run_study(cfg, out, data=data, progress=False, log=_quiet, **kwargs)


def _child(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _SETUP + textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


# --------------------------------------------------------------------------------------------
# two writers on one --out
# --------------------------------------------------------------------------------------------

_HELD_STUDY = """
    import pathlib, sys, time
    out, wait = sys.argv[1], float(sys.argv[2])
    real = study.protocol.train_one

    def held(*args, **kwargs):  # trains only once the test says go, so the lock is held till then
        while not (pathlib.Path(out) / "go").exists():
            time.sleep(0.05)
        return real(*args, **kwargs)

    study.protocol.train_one = held
    print("ready", flush=True)
    try:
        study.run_study(tiny_config(), out, data=tiny_data(), progress=False, wait=wait,
                        command="first-writer", log=lambda line: print(line, flush=True))
    except study.LockHeld as exc:
        print("REFUSED", exc, flush=True)
        sys.exit(3)
"""


def test_two_processes_on_one_out_never_duplicate_or_lose_a_run(tmp_path):
    first = _child(_HELD_STUDY, tmp_path, 0)
    try:
        assert first.stdout.readline() == "ready\n"
        assert first.stdout.readline().startswith("search:")  # it holds the lock
        refused = _child(_HELD_STUDY, tmp_path, 0)
        out_refused, _ = refused.communicate(timeout=120)
        assert refused.returncode == 3
        assert out_refused.startswith(f"ready\nREFUSED the study results {tmp_path / 'results.jsonl'} is locked by "
                                      f"pid {first.pid} on host ")
        assert "running 'first-writer'; lock file " in out_refused
        waiting = _child(_HELD_STUDY, tmp_path, 300)
        assert waiting.stdout.readline() == "ready\n"
        time.sleep(1.0)  # it is now waiting for the lock
        assert waiting.poll() is None
    finally:
        (tmp_path / "go").touch()
    first.communicate(timeout=300)
    out_waiting, err = waiting.communicate(timeout=300)
    assert first.returncode == 0 and waiting.returncode == 0, err
    assert "search: 4 runs in the grid, 0 to do" in out_waiting  # it waited, then found all done
    records = study.ResultStore(tmp_path / "results.jsonl").load()
    assert len(records) == N_RUNS and len(study.dedupe(records)[0]) == N_RUNS
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob(".*.tmp"))


def test_summary_reads_without_the_lock(tmp_path, data, capsys):
    _run(tiny_config(), tmp_path, data)
    with study.ResultStore(tmp_path / "results.jsonl").lock():  # a writer is busy
        assert study.main(["summary", "--out", str(tmp_path)]) == 0
    assert "| SGD |" in capsys.readouterr().out


def test_merge_while_a_writer_holds_the_lock_is_refused_in_one_line(tmp_path, capsys):
    with study.ResultStore(tmp_path / "results.jsonl").lock(command="a study run"):
        assert study.main(["merge", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the study results {tmp_path / 'results.jsonl'} is locked by pid {os.getpid()} "
                          f"on host ") and "running 'a study run'" in err and err.count("\n") == 1
    assert err.endswith(f"; lock file {tmp_path / 'results.jsonl.lock'}. Let it finish (run with --wait SECONDS to "
                        f"wait for it) or use another --out\n")
    assert study.main(["merge", "--out", str(tmp_path)]) == 0  # released


# --------------------------------------------------------------------------------------------
# a SIGKILL in the middle of a store write, then a rerun
# --------------------------------------------------------------------------------------------

_KILLED_IN_A_WRITE = """
    import sys, time
    from course_lib import files
    real_write = files.atomic_write
    calls = []

    def stalls_on_the_third_write(path, write, **kwargs):
        if str(path).endswith("results.jsonl"):
            calls.append(path)
            if len(calls) == 3:
                def half(f):
                    f.write('{"half": ')
                    f.flush()
                    print("WRITING", flush=True)
                    time.sleep(60)
                return real_write(path, half, **kwargs)
        return real_write(path, write, **kwargs)

    files.atomic_write = stalls_on_the_third_write
    study.run_study(tiny_config(), sys.argv[1], data=tiny_data(), progress=False, log=lambda *a: None)
"""


def test_sigkill_during_a_store_write_then_a_rerun(tmp_path, data):
    child = _child(_KILLED_IN_A_WRITE, tmp_path)
    try:
        assert child.stdout.readline().strip() == "WRITING"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    temporaries = list(tmp_path.glob(".results.jsonl.*.tmp"))
    assert len(temporaries) == 1 and f"-{child.pid}." in temporaries[0].name  # left by the kill
    assert json.loads((tmp_path / "results.jsonl.lock").read_text())["pid"] == child.pid  # a dead holder
    store = study.ResultStore(tmp_path / "results.jsonl")
    assert len(store.load()) == 2  # the runs finished before the kill, intact

    _run(tiny_config(), tmp_path, data)  # the rerun takes the lock over, cleans up, completes
    records = store.load()
    assert len(records) == N_RUNS and len(study.dedupe(records)[0]) == N_RUNS
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "results.jsonl.lock").exists()


# --------------------------------------------------------------------------------------------
# another configuration into the same --out
# --------------------------------------------------------------------------------------------


def test_another_configuration_is_refused_naming_both_fingerprints(tmp_path, data):
    cfg, other = tiny_config(), tiny_config(epochs=2, batch_size=10)
    _run(cfg, tmp_path, data, phase="search")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(study.ConfigMismatch) as info:
        _run(other, tmp_path, data, phase="search")
    assert str(info.value) == (
        f"{tmp_path} holds a study with fingerprint {cfg.fingerprint()} (its study-config.json), but this "
        f"configuration has fingerprint {other.fingerprint()}; settings that differ: batch_size 20 -> 10; "
        f"epochs 1 -> 2. Use another --out, or --force-new to move the old results aside into "
        f"{tmp_path}/previous-<date>-<fingerprint>/ (nothing is deleted).")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written

    _run(other, tmp_path, data, phase="search", force_new=True)
    (previous,) = tmp_path.glob("previous-*")
    assert previous.name.endswith(f"-{cfg.fingerprint()}")
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == before  # moved, not deleted
    assert study.load_config(tmp_path) == other
    assert {r["fingerprint"] for r in study.ResultStore(tmp_path / "results.jsonl").load()} == {other.fingerprint()}


def test_results_of_another_fingerprint_without_a_configuration_are_refused(tmp_path, data):
    _run(tiny_config(), tmp_path, data, phase="search")
    (tmp_path / "study-config.json").unlink()
    other = tiny_config(epochs=2)
    with pytest.raises(study.ConfigMismatch, match=rf"holds results of fingerprint {tiny_config().fingerprint()} "
                                                   rf"\(and no study-config.json\)"):
        study.write_config(other, tmp_path)


def test_the_command_line_refuses_another_configuration_in_one_line(tmp_path, capsys):
    study.write_config(tiny_config(), tmp_path)
    assert study.main(["run", "--mode", "fast", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path} holds a study with fingerprint {tiny_config().fingerprint()}")
    assert "--force-new" in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# duplicates, incomplete studies
# --------------------------------------------------------------------------------------------


def test_summary_counts_each_run_once_and_says_it_found_duplicates(tmp_path, data, capsys):
    cfg = tiny_config()
    _run(cfg, tmp_path, data)
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + lines[-2:] + lines[:1]) + "\n")  # what two unlocked writers left
    assert study.main(["summary", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert f"note: {path} holds 3 duplicate record(s) of the same run" in captured.err
    rows = study.summarize(cfg, study.ResultStore(path).load())
    assert [r["seeds"] for r in rows] == [cfg.final_seeds] * 2


def test_duplicates_cannot_hide_an_incomplete_search(tmp_path, data):
    cfg = tiny_config()
    _run(cfg, tmp_path, data, phase="search")
    store = study.ResultStore(tmp_path / "results.jsonl")
    records = [r for r in store.load() if not (r["optimizer"] == "SGD" and r["lr"] == 0.3)]
    store.write(records + [records[0]])  # still four records, but only three rates
    with pytest.raises(study.IncompleteStudy, match=r"search for SGD is incomplete \(1 of 2 learning rates done\)"):
        study.chosen_learning_rates(cfg, store.load())
    assert store.append(records[0]) is False  # a run is never recorded twice
    assert len(store.load()) == 4


def test_final_before_search_and_summary_of_an_incomplete_study_exit_2_in_one_line(tmp_path, data, capsys,
                                                                                   monkeypatch):  # fmt: skip
    def no_data(*args, **kwargs):
        raise AssertionError("loaded data for a phase that cannot run")

    monkeypatch.setattr(study.protocol, "load_data", no_data)
    assert study.main(["run", "--mode", "fast", "--phase", "final", "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err == ("error: the learning-rate search for SGD is incomplete (0 of 4 learning "
                                       "rates done); run or merge the search phase first\n")
    _run(tiny_config(), tmp_path / "b", data, phase="search")
    assert study.main(["summary", "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == (
        "error: the final phase is incomplete (SGD 0 of 2 seeds, Adam 0 of 2 seeds; learning rates chosen: "
        + ", ".join(f"{k} {v:g}" for k, v in study.chosen_learning_rates(
            tiny_config(), study.ResultStore(tmp_path / "b" / "results.jsonl").load()).items())
        + "); run --phase final (or merge its shard files) first\n")


# --------------------------------------------------------------------------------------------
# environment errors before anything is written
# --------------------------------------------------------------------------------------------


def test_an_unusable_device_is_reported_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "banana")
    out = tmp_path / "study"
    assert study.main(["run", "--mode", "fast", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: COURSE_DEVICE='banana' is not a device torch knows")
    assert not out.exists()


def test_an_unusable_data_dir_is_reported_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "mistyped"))
    out = tmp_path / "study"
    assert study.main(["run", "--mode", "fast", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"error: COURSE_DATA_DIR='{tmp_path / 'mistyped'}' does not exist")
    assert not out.exists() and not (tmp_path / "mistyped").exists()


def test_mode_works_whatever_course_fast_says(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "2")
    monkeypatch.setattr(study.protocol, "load_data", lambda *a, **k: pytest.fail("loaded data"))
    assert study.main(["run", "--mode", "fast", "--phase", "final", "--out", str(tmp_path)]) == 2
    assert "learning-rate search for SGD is incomplete" in capsys.readouterr().err  # --mode was used
    assert study.main(["run", "--phase", "final", "--out", str(tmp_path)]) == 2  # no --mode: COURSE_FAST counts
    assert capsys.readouterr().err.startswith("error: COURSE_FAST='2' is not a known value: use 1")


# --------------------------------------------------------------------------------------------
# standard JSON, configuration checks
# --------------------------------------------------------------------------------------------


def test_results_are_standard_json_with_flagged_nulls(tmp_path):
    store = study.ResultStore(tmp_path / "results.jsonl")
    record = {"key": "search/SGD/lr=1/seed=0", "fingerprint": "f", "phase": "search", "optimizer": "SGD", "lr": 1.0,
              "seed": 0, "test_acc": float("nan"), "history": {"step_loss": [2.3, float("inf"), float("nan")],
                                                              "epochs": [{"val_loss": float("-inf")}]}}  # fmt: skip
    store.append(record)
    text = store.path.read_text()

    def refuse(constant):
        raise ValueError(f"bare {constant} in the file")

    raw = json.loads(text, parse_constant=refuse)  # strict JSON: no NaN, Infinity
    assert raw["test_acc"] is None and raw["history"]["step_loss"] == [2.3, None, None]
    assert raw["nonfinite"] == {"test_acc": "nan", "history/step_loss/1": "inf", "history/step_loss/2": "nan",
                                "history/epochs/0/val_loss": "-inf"}  # fmt: skip
    (loaded,) = store.load()
    assert math.isnan(loaded["test_acc"]) and loaded["history"]["step_loss"][1] == float("inf")
    assert loaded["history"]["epochs"][0]["val_loss"] == float("-inf") and "nonfinite" not in loaded


@pytest.mark.parametrize("changes,message", [
    (dict(batch_size=0), "batch_size must be a whole number >= 1, got 0"),
    (dict(val_fraction=1.0), "val_fraction must satisfy 0 < val_fraction < 1, got 1.0"),
    (dict(val_fraction=0), "val_fraction must satisfy 0 < val_fraction < 1, got 0"),
    (dict(tta=3), "tta must be a test-time augmentation level 0, 1 or 2"),
    (dict(lr_grids={"SGD": (0.1,)}), "no learning-rate grid for Adam: lr_grids has SGD"),
    (dict(lr_grids={"SGD": (), "Adam": (0.1,)}), r"lr_grids\['SGD'\] must be a non-empty sequence"),
    (dict(lr_grids={"SGD": (-0.1,), "Adam": (0.1,)}), r"lr_grids\['SGD'\] must be a non-empty sequence"),
    (dict(train_per_class=0), "train_per_class must be a whole number >= 1 or None, got 0"),
    (dict(warmup_fraction=1.0), "warmup_fraction must satisfy 0 <= warmup_fraction < 1"),
])  # fmt: skip
def test_study_config_checks_every_field_when_it_is_made(changes, message):
    with pytest.raises(ValueError, match=f"^StudyConfig: {message}"):
        tiny_config(**changes)
    for mode in ("fast", "full"):
        study.config_for(mode)  # the shipped configurations pass


def _record(key, steps, **history):
    return dict(key=key, fingerprint="f", task="cifar10", optimizer="SGD", lr=0.1, seed=0, phase="search",
                history=dict(step_loss=[float(i) for i in range(steps)], epochs=[], **history))  # fmt: skip


def test_thin_keeps_every_nth_step_and_says_so(tmp_path, capsys):
    store = study.ResultStore(tmp_path / "results.jsonl")
    store.write([_record("a", 25), _record("b", 7)])
    assert study.cli.main(["thin", "--out", str(tmp_path), "--every", "5"]) == 0
    assert "thinned the per-step loss of 2 of 2 runs to every 5th step" in capsys.readouterr().out
    a, b = store.load()
    assert a["history"]["step_loss"] == [0.0, 5.0, 10.0, 15.0, 20.0] and a["history"]["step_loss_every"] == 5
    assert b["history"]["step_loss"] == [0.0, 5.0]
    assert {k: v for k, v in a.items() if k != "history"} == {k: v for k, v in _record("a", 25).items()
                                                             if k != "history"}  # fmt: skip
    # thinning again by a multiple thins further, from the steps kept; the same factor changes nothing
    assert study.thin(tmp_path, 5) == (0, 2)
    assert study.thin(tmp_path, 10) == (2, 2)
    assert store.load()[0]["history"]["step_loss"] == [0.0, 10.0, 20.0]


def test_thin_refuses_a_factor_that_does_not_divide_an_earlier_thinning(tmp_path, capsys):
    study.ResultStore(tmp_path / "results.jsonl").write([_record("a", 30, step_loss_every=10)])
    with pytest.raises(ValueError, match="already thinned to every 10th step"):
        study.thin_step_loss(study.ResultStore(tmp_path / "results.jsonl").load()[0], 15)
    assert study.cli.main(["thin", "--out", str(tmp_path), "--every", "15"]) == 2
    assert "error: run a is already thinned" in capsys.readouterr().err
    assert study.cli.main(["thin", "--out", str(tmp_path / "empty"), "--every", "2"]) == 2
    assert "error: no results in" in capsys.readouterr().err and not (tmp_path / "empty").exists()
    assert study.cli.main(["thin", "--out", str(tmp_path), "--every", "0"]) == 2
    assert "every must be at least 1, got 0" in capsys.readouterr().err
