"""The study runner: protocol, resumability, sharding, summary (tiny synthetic data, CPU)."""

import dataclasses
import json

import numpy as np
import pytest

from course_lib import study


@pytest.fixture
def cfg():
    return study.StudyConfig(mode="test", model="small_cnn", model_kwargs={"widths": (4, 4, 4)}, epochs=2,
                             batch_size=40, final_seeds=2, target_accuracy=0.2, augment=False,
                             optimizers=("SGD", "Adam"), grid_extensions=0,
                             lr_grids={"SGD": (0.01, 0.3), "Adam": (1e-4, 1e-2)})  # fmt: skip


def keys(store):
    return sorted(r["key"] for r in store.load())


def test_full_protocol_and_resume(tmp_path, cfg, tiny_data, monkeypatch):
    store = study.run_study(cfg, tmp_path, data=tiny_data, progress=False, log=lambda *_: None)
    records = store.load()
    assert [r["phase"] for r in records].count("search") == 4
    assert [r["phase"] for r in records].count("final") == 4  # seeds 1 and 2 of each: fresh, not the search's 0
    assert {r["seed"] for r in records if r["phase"] == "final"} == {1, 2}
    assert not any("test_acc" in r or "test_loss" in r for r in records if r["phase"] == "search")
    for r in records:  # images are 0/1 trials: the per-image spread gives sqrt(p(1 - p) / (n - 1))
        n = r["val_size"]
        assert r["val_acc_se"] == pytest.approx(study.validation_se(r["final_val_acc"], n) * np.sqrt(n / (n - 1)))
    chosen = study.chosen_learning_rates(cfg, records)
    for name in cfg.optimizers:
        search = {r["lr"]: r["final_val_acc"] for r in records if r["optimizer"] == name and r["phase"] == "search"}
        assert search[chosen[name]] == max(search.values())  # picked on validation accuracy
    rows = study.summarize(cfg, records)
    assert [r["optimizer"] for r in rows] == ["SGD", "Adam"] and all(r["seeds"] == 2 for r in rows)
    assert "± " in study.summary_markdown(rows, cfg.target_accuracy)
    for r in rows:  # two rates per grid, no extension: the chosen one is always at an end, and the table says so
        grid = cfg.lr_grids[r["optimizer"]]
        assert r["lr_at_edge"] == ("smallest" if r["lr"] == min(grid) else "largest")
    assert "in grid)" in study.summary_markdown(rows, cfg.target_accuracy)
    inside = [dict(r, lr_at_edge="") for r in rows]
    assert "grid" not in study.summary_markdown(inside, cfg.target_accuracy)

    # a second run does nothing: every run is already in the results file
    monkeypatch.setattr(study.protocol, "train_one", lambda *a, **k: pytest.fail("re-ran a finished run"))
    study.run_study(cfg, tmp_path, data=tiny_data, progress=False, log=lambda *_: None)
    assert len(store.load()) == 8


def test_same_initial_weights_within_a_seed(tmp_path, cfg, tiny_data):
    store = study.run_study(cfg, tmp_path, phase="search", data=tiny_data, progress=False, log=lambda *_: None)
    first_losses = {r["key"]: r["history"]["step_loss"][0] for r in store.load()}
    assert len(set(np.round(list(first_losses.values()), 6))) == 1  # same weights, same first batch


def test_interruption_keeps_finished_runs(tmp_path, cfg, tiny_data, interrupt_third_run):
    with pytest.raises(KeyboardInterrupt):
        study.run_study(cfg, tmp_path, data=tiny_data, progress=False, log=lambda *_: None)
    store = study.ResultStore(tmp_path / "results.jsonl")
    assert len(store.load()) == 2
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written file
    interrupt_third_run()  # restore the real training
    study.run_study(cfg, tmp_path, data=tiny_data, progress=False, log=lambda *_: None)
    assert len(store.load()) == 8


def test_shards_and_merge_cover_the_grid(tmp_path, cfg, tiny_data):
    for i in (1, 2):
        study.run_study(cfg, tmp_path, phase="search", shard_spec=(i, 2), data=tiny_data, progress=False,
                        log=lambda *_: None)  # fmt: skip
    parts = [study.ResultStore(tmp_path / f"results-{i}-of-2.jsonl") for i in (1, 2)]
    assert not set(keys(parts[0])) & set(keys(parts[1]))
    merged = study.merge(tmp_path)
    assert keys(merged) == sorted(s.key for s in study.search_runs(cfg))
    for i in (1, 2):  # the final phase reads the merged search results
        study.run_study(cfg, tmp_path, phase="final", shard_spec=(i, 2), data=tiny_data, progress=False,
                        log=lambda *_: None)  # fmt: skip
    assert len(study.merge(tmp_path).load()) == 8


def test_final_phase_needs_a_complete_search(tmp_path, cfg, tiny_data):
    with pytest.raises(RuntimeError, match="search .* incomplete"):
        study.run_study(cfg, tmp_path, phase="final", data=tiny_data, progress=False, log=lambda *_: None)


def test_results_of_another_configuration_are_not_reused(tmp_path, cfg, tiny_data):
    study.run_study(cfg, tmp_path, phase="search", data=tiny_data, progress=False, log=lambda *_: None)
    other = dataclasses.replace(cfg, epochs=1)
    assert other.fingerprint() != cfg.fingerprint()
    assert study.ResultStore(tmp_path / "results.jsonl").done(other.fingerprint()) == set()


def test_figures_and_cli_errors(tmp_path, cfg, tiny_data, capsys):
    records = study.run_study(cfg, tmp_path, data=tiny_data, progress=False, log=lambda *_: None).load()
    for path in study.save_figures(cfg, records, tmp_path):
        assert path.stat().st_size > 1000
    assert study.curves(cfg, records)["Adam"].shape == (2, cfg.epochs)  # the two final seeds
    with pytest.raises(SystemExit):
        study.main(["run", "--out", str(tmp_path), "--shard", "3/2"])
    assert "1 <= i <= n" in capsys.readouterr().err
    assert study.main(["summary", "--out", str(tmp_path / "empty"), "--mode", "fast"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no results in {tmp_path / 'empty' / 'results.jsonl'}; run the study first\n"


def test_corrupt_results_file_is_reported(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"key": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        study.ResultStore(tmp_path / "results.jsonl").load()


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="unknown optimizers"):
        study.StudyConfig(mode="x", model="small_cnn", optimizers=("Lion",))


def test_summary_reads_the_configuration_the_study_ran_with(tmp_path, cfg, tiny_data, capsys):
    study.run_study(cfg, tmp_path, data=tiny_data, progress=False, log=lambda *_: None)
    loaded = study.load_config(tmp_path)
    assert loaded == cfg and loaded.fingerprint() == cfg.fingerprint()
    assert study.main(["summary", "--out", str(tmp_path)]) == 0  # no --mode: the saved configuration
    table = (tmp_path / "summary.md").read_text()
    assert "| SGD |" in table and "| Adam |" in table and "nan ±" not in table
    with pytest.raises(FileNotFoundError, match="study-config.json"):
        study.load_config(tmp_path / "nothing-here")
    (tmp_path / "study-config.json").write_text('{"mode": "fast",')  # cut off mid-write by hand
    with pytest.raises(ValueError, match="study-config.json: not a study configuration"):
        study.load_config(tmp_path)


def test_airbench_recipe_whitening_label_smoothing_tta(tmp_path, tiny_data):
    recipe = study.StudyConfig(mode="test", model="airbench", model_kwargs={"widths": (8, 8, 8)}, epochs=1,
                               batch_size=40, final_seeds=1, augment=False, optimizers=("Nesterov",),
                               lr_grids={"Nesterov": (0.01,)}, whiten=True, label_smoothing=0.2, tta=2)  # fmt: skip
    plain = dataclasses.replace(recipe, label_smoothing=0.0, tta=0)
    spec = study.RunSpec("final", "Nesterov", 0.01, 1)  # a final run: the search has no test numbers
    smoothed, unsmoothed = (study.train_one(c, spec, tiny_data, progress=False) for c in (recipe, plain))
    assert 0 <= smoothed["test_acc"] <= 1 and 0 <= unsmoothed["test_acc"] <= 1
    # same data, weights and batches: only the loss differs, so the first step's loss does
    first = smoothed["history"]["step_loss"][0], unsmoothed["history"]["step_loss"][0]
    assert first[0] != pytest.approx(first[1], rel=1e-4)
    with pytest.raises(ValueError, match="airbench"):
        study.StudyConfig(mode="x", model="small_cnn", whiten=True)


def test_provenance_records_what_produced_the_results(tmp_path, cfg):
    import course_lib

    entry = study.provenance(cfg, "python -m course_lib.study run --mode fast --out x", "cpu", "CIFAR-10 (test)")
    assert entry["command"].endswith("--out x") and entry["device"] == "cpu" and entry["data"] == "CIFAR-10 (test)"
    assert entry["course_lib"].startswith(course_lib.__version__)
    assert entry["fingerprint"] == cfg.fingerprint() and entry["config"]["epochs"] == cfg.epochs
    for key in ("date", "python", "torch", "numpy", "platform"):
        assert entry[key]
    study.record_provenance(tmp_path, entry)
    study.record_provenance(tmp_path, dict(entry, device="cuda:0"))  # a resumed run on another machine
    assert [e["device"] for e in json.loads((tmp_path / "provenance.json").read_text())] == ["cpu", "cuda:0"]


def test_a_new_setting_at_its_default_keeps_old_fingerprints(cfg):
    Extended = dataclasses.make_dataclass("Extended", [("new_option", bool, dataclasses.field(default=False))],
                                          bases=(study.StudyConfig,), frozen=True)  # fmt: skip
    same = Extended(**dataclasses.asdict(cfg))
    assert same.fingerprint() == cfg.fingerprint()
    assert Extended(**dataclasses.asdict(cfg), new_option=True).fingerprint() != cfg.fingerprint()
    assert dataclasses.replace(cfg, tta=0).fingerprint() == cfg.fingerprint()  # tta=0 is the default
    assert dataclasses.replace(cfg, tta=1).fingerprint() != cfg.fingerprint()


def test_default_fingerprints_are_those_of_the_protocol_2_studies():
    # a setting at its default is left out of the hash (stored results stay readable when a setting
    # is added), but the protocol's version is always in: protocol 1's results are never mixed in
    assert study.fast_config().fingerprint() == "1981c6c76f7a"
    assert study.full_config().fingerprint() == "107a1bee5022"
    assert study.reference_config().fingerprint() == "8ceea51aad88"


def test_optimizer_settings_are_part_of_the_configuration(tmp_path, cfg, tiny_data):
    assert study.optimizer_for(cfg, "Nesterov") == (study.OPTIMIZER_CLASSES["SGD"], {"momentum": 0.9, "nesterov": True})
    settings = dict(cfg.optimizer_settings, SGD=("SGD", {"momentum": 0.5}))
    changed = dataclasses.replace(cfg, optimizer_settings=settings)
    assert changed.fingerprint() != cfg.fingerprint()
    spec = study.RunSpec("search", "SGD", 0.3, 0)
    plain, with_momentum = (study.train_one(c, spec, tiny_data, progress=False) for c in (cfg, changed))
    assert plain["history"]["step_loss"][0] == with_momentum["history"]["step_loss"][0]  # same weights, batch
    assert plain["history"]["step_loss"][-1] != with_momentum["history"]["step_loss"][-1]  # the setting is used
    # the override of the benchmarks: (class, fixed kwargs) instead of the configuration's entry
    override = study.train_one(changed, spec, tiny_data, progress=False, optimizer=study.optimizer_for(cfg, "SGD"))
    assert override["history"]["step_loss"] == plain["history"]["step_loss"]
    study.write_config(changed, tmp_path)
    assert study.load_config(tmp_path) == changed  # the settings survive the JSON round trip
    with pytest.raises(ValueError, match="unknown class"):
        dataclasses.replace(cfg, optimizer_settings=dict(settings, SGD=("Shampoo", {})))  # Lion is a class now
    with pytest.raises(ValueError, match="learning rate is searched"):
        dataclasses.replace(cfg, optimizer_settings=dict(settings, SGD=("SGD", {"lr": 0.1})))


def test_a_configuration_written_before_optimizer_settings_existed_loads(tmp_path, cfg):
    study.write_config(cfg, tmp_path)
    path = tmp_path / "study-config.json"
    fields = json.loads(path.read_text())
    del fields["optimizer_settings"]
    path.write_text(json.dumps(fields))
    loaded = study.load_config(tmp_path)
    assert loaded == cfg and loaded.fingerprint() == cfg.fingerprint()


def test_train_one_leaves_the_callers_generator_alone(cfg, tiny_data):
    import torch

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    study.train_one(cfg, study.RunSpec("search", "SGD", 0.01, 3), tiny_data, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_all_lists_every_name_notebook_11_and_the_benchmarks_use():
    import re

    from course_lib import config

    root = config.repo_root()
    notebook = json.loads((root / "notebooks" / "11-cifar10-optimizer-study.ipynb").read_text())
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    sources.append((root / "benchmarks" / "airbench_speed.py").read_text())
    used = {name for text in sources for name in re.findall(r"\bstudy\.(\w+)", text)}
    assert {"load_data", "data_variant", "summary_markdown", "run_study", "optimizer_for"} <= used
    assert used <= set(study.__all__), used - set(study.__all__)
    assert all(hasattr(study, name) for name in study.__all__)


def _text_cfg(**changes):
    settings = dict(mode="test", task="shakespeare", model="transformer",
                    model_kwargs={"size": None, "layers": 1, "width": 16, "heads": 2}, epochs=None, steps=6,
                    eval_every=3, batch_size=4, context=16, eval_windows=8, augment=False, final_seeds=2,
                    target_accuracy=0.1, optimizers=("Momentum", "Adam"), grid_extensions=0,
                    lr_grids={"Momentum": (0.01, 0.1), "Adam": (1e-3, 1e-2)})  # fmt: skip
    return study.StudyConfig(**{**settings, **changes})


def test_the_text_task_is_checked_and_keyed_by_its_fingerprint():
    cfg = _text_cfg()
    assert cfg.fingerprint() != study.fast_config().fingerprint()
    assert cfg.history_axis()[1] == "step" and list(cfg.history_axis()[0]) == [3, 6]
    assert study.config_for("fast", "shakespeare").task == "shakespeare"
    assert study.text_fast_config().optimizers == ("SGD", "Momentum", "RMSProp", "Adam")
    with pytest.raises(ValueError, match="the shakespeare task trains 'transformer', got model 'small_cnn'"):
        _text_cfg(model="small_cnn")
    with pytest.raises(ValueError, match="task must be one of"):
        _text_cfg(task="imagenet")
    with pytest.raises(ValueError, match="epochs or as steps, not both"):
        _text_cfg(epochs=2)
    with pytest.raises(ValueError, match="needs eval_every between 1 and steps"):
        _text_cfg(eval_every=None)
    with pytest.raises(ValueError, match="no augmentation"):
        _text_cfg(augment=True)
    with pytest.raises(ValueError, match="mode must be 'fast', 'full' or 'reference' and task one of"):
        study.config_for("fast", "mnist")


def test_the_text_study_runs_through_the_command_line(tmp_path, monkeypatch, capsys):
    from course_lib.engine import text

    if text.locate_shakespeare() is None:
        pytest.skip("tiny Shakespeare is not in the data directory (COURSE_DATA_DIR)")
    cfg = _text_cfg()
    monkeypatch.setattr(study.cli, "config_for", lambda mode, task="cifar10": cfg if task == "shakespeare" else None)
    out = tmp_path / "text-study"
    assert study.main(["run", "--task", "shakespeare", "--mode", "fast", "--out", str(out), "--no-progress"]) == 0
    records = study.ResultStore(out / "results.jsonl").load()
    assert len(records) == 4 + 4  # the grid (no extension: grid_extensions=0), then two fresh seeds of each
    assert all(r["fingerprint"] == cfg.fingerprint() for r in records)
    assert all([e["step"] for e in r["history"]["epochs"]] == [3, 6] for r in records if not r["history"]["diverged"])
    assert study.load_config(out) == cfg
    for r in study.search_table(cfg, records):  # the window is the unit: its s.e. is below one 0/1 trial per window
        if not r["diverged"]:
            assert np.isfinite(r["val_acc_se"]) and r["val_acc_se"] < study.validation_se(r["val_acc"], cfg.eval_windows)
    assert "tiny Shakespeare" in json.loads((out / "provenance.json").read_text())[0]["data"]
    assert study.main(["summary", "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "steps to 10% val acc" in summary and "Momentum" in summary
    difference = study.paired(cfg, records, "Momentum", "Adam", "test_loss")
    assert difference.n_seeds == 2 and np.isfinite(difference.se)


def test_the_text_reference_is_the_reference_protocol_on_the_transformer():
    cfg = study.config_for("reference", "shakespeare")
    assert cfg == study.text_reference_config() and cfg.task == "shakespeare" and cfg.mode == "reference"
    assert cfg.final_seeds == 5 and cfg.optimizers == study.reference_config().optimizers
    assert cfg.steps * cfg.batch_size * cfg.context > 2_000_000  # more than two passes over the training text
    assert cfg.fingerprint() == "b7e647666df8"  # the study committed in reference/study-cpu-shakespeare/


@pytest.mark.parametrize("folder, make", [("study-cpu", study.reference_config),
                                          ("study-cpu-shakespeare", study.text_reference_config)])
def test_the_committed_reference_studies_are_complete_and_made_by_this_code(folder, make):
    from course_lib import config

    text, stored, records = study.describe_study(config.repo_root() / "reference" / folder)
    assert stored is not None and stored.fingerprint() == make().fingerprint()
    assert study.study_status(stored, records)["complete"] and "Status: complete" in text
    assert all(r["history"].get("step_loss_every") == 10 for r in records if r["history"]["step_loss"])  # thinned
    best = study.best_of(stored, records)  # five fresh seeds each: verdicts can be computed
    assert len(best["rows"]) == len(stored.optimizers) - 1 and all(r["difference"].n_seeds >= 4 for r in best["rows"])


def test_summary_table_says_when_a_mean_leaves_diverged_seeds_out():
    row = dict(optimizer="SGD", lr=1.0, lr_at_edge="", seeds=5, diverged=1, test_acc_mean=0.299, test_acc_se=0.002,
               test_acc_std=0.004, reached_target="0/5", time_to_target_s=float("nan"), steps_to_target=float("nan"))  # fmt: skip
    table = study.summary_markdown([row, dict(row, optimizer="Adam", diverged=0)], 0.4)
    sgd, adam = (line for line in table.splitlines() if line.startswith(("| SGD", "| Adam")))
    assert "0.299 ± 0.002 (mean of the 4 finished)" in sgd and "finished" not in adam
    assert "SGD diverged on 1 of its 5 seeds" in table and "Adam diverged" not in table
    assert "finished seeds" not in study.summary_markdown([dict(row, diverged=0)], 0.4)
