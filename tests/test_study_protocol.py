"""The study's protocol (version 2): grid extension, fresh final seeds, no test numbers in the
search, one weight decay for all, schedule-free at a constant rate, paired verdicts corrected for
picking the best, the --optimizers flag, provenance with wall time and status (CPU, seconds)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from course_lib import optim, study
from course_lib.engine.paired import corrected_k


@pytest.fixture
def cfg():
    return study.StudyConfig(mode="test", model="small_cnn", model_kwargs={"widths": (4, 4, 4)}, epochs=2,
                             batch_size=40, final_seeds=3, target_accuracy=0.2, augment=False,
                             optimizers=("SGD", "Adam"), lr_grids={"SGD": (0.01, 0.1), "Adam": (1e-3, 1e-2)})  # fmt: skip


def fake_record(cfg, phase, name, lr, seed, val_acc, test_acc=None, diverged=False):
    """A record as train_one writes it, without training: a final validation accuracy and loss."""
    record = {"key": study.RunSpec(phase, name, lr, seed).key, "fingerprint": cfg.fingerprint(), "phase": phase,
              "optimizer": name, "lr": lr, "seed": seed, "final_val_acc": float("nan") if diverged else val_acc,
              "val_size": 400, "time_to_target": None, "steps_to_target": None,
              "history": {"diverged": diverged, "seconds": 0.0, "step_loss": [],
                          "epochs": [] if diverged else [{"val_acc": val_acc, "val_loss": 1 - val_acc}]}}  # fmt: skip
    if test_acc is not None:
        record.update(test_acc=test_acc, test_loss=1 - test_acc)
    return record


def test_a_rate_at_the_top_of_its_grid_extends_the_grid_until_interior_or_the_bound(cfg):
    score = {0.01: 0.3, 0.1: 0.4}  # SGD's best is the largest rate
    records = [fake_record(cfg, "search", "SGD", lr, 0, acc) for lr, acc in score.items()]
    search = study.lr_search(cfg, "SGD", records)
    assert search.missing == (1.0,) and search.chosen is None  # one step up, at the grid's ratio (10)
    with pytest.raises(study.IncompleteStudy, match="search for SGD is incomplete"):
        study.chosen_learning_rates(dataclasses.replace(cfg, optimizers=("SGD",)), records)
    records.append(fake_record(cfg, "search", "SGD", 1.0, 0, 0.5))  # still rising: one more
    assert study.lr_search(cfg, "SGD", records).missing == (10.0,)
    records.append(fake_record(cfg, "search", "SGD", 10.0, 0, 0.6))  # still at the top, bound reached (2)
    search = study.lr_search(cfg, "SGD", records)
    assert search.complete and search.chosen == 10.0 and search.at_bound == "largest"
    assert search.added == ((), (1.0, 10.0)) and search.grid == (0.01, 0.1, 1.0, 10.0)
    # had the second extension fallen off (diverged), the best would be interior: no bound to state
    records[-1] = fake_record(cfg, "search", "SGD", 10.0, 0, 0.0, diverged=True)
    search = study.lr_search(cfg, "SGD", records)
    assert search.complete and search.chosen == 1.0 and search.at_bound == ""


def test_a_rate_at_the_bottom_extends_downwards_and_an_interior_one_not_at_all(cfg):
    records = [fake_record(cfg, "search", "Adam", 1e-3, 0, 0.5), fake_record(cfg, "search", "Adam", 1e-2, 0, 0.2)]
    assert study.lr_search(cfg, "Adam", records).missing == (1e-4,)
    records.append(fake_record(cfg, "search", "Adam", 1e-4, 0, 0.3))  # 1e-3 is now interior
    search = study.lr_search(cfg, "Adam", records)
    assert search.complete and search.chosen == 1e-3 and search.at_bound == "" and search.added == ((1e-4,), ())
    no_extension = dataclasses.replace(cfg, grid_extensions=0)
    kept = [dict(r, fingerprint=no_extension.fingerprint()) for r in records[:2]]
    assert study.lr_search(no_extension, "Adam", kept).at_bound == "smallest"
    # the grid's ratio at that end: a grid 1, 2, 8 steps down to 0.5 and up to 32
    uneven = dataclasses.replace(cfg, lr_grids={"SGD": (1.0, 2.0, 8.0), "Adam": (1e-3, 1e-2)})
    top = [fake_record(uneven, "search", "SGD", lr, 0, acc) for lr, acc in ((1.0, 0.1), (2.0, 0.2), (8.0, 0.3))]
    assert study.lr_search(uneven, "SGD", top).missing == (32.0,)
    bottom = [fake_record(uneven, "search", "SGD", lr, 0, acc) for lr, acc in ((1.0, 0.3), (2.0, 0.2), (8.0, 0.1))]
    assert study.lr_search(uneven, "SGD", bottom).missing == (0.5,)


def test_run_study_extends_the_grid_then_trains_fresh_seeds(tmp_path, cfg, monkeypatch):
    peak = {"SGD": 1.0, "Adam": 1e-3}  # SGD's best lies above its grid, Adam's inside it

    def fake_train(c, spec, data, progress=None, optimizer=None):
        acc = 0.9 - 0.1 * abs(np.log10(spec.lr / peak[spec.optimizer]))
        return fake_record(c, spec.phase, spec.optimizer, spec.lr, spec.seed, acc,
                           test_acc=None if spec.phase == "search" else acc - 0.01 * spec.seed)  # fmt: skip

    monkeypatch.setattr(study.protocol, "train_one", fake_train)
    records = study.run_study(cfg, tmp_path, data={}, progress=False, log=lambda *_: None).load()
    search = {(r["optimizer"], r["lr"]) for r in records if r["phase"] == "search"}
    assert search == {("SGD", 0.01), ("SGD", 0.1), ("SGD", 1.0), ("SGD", 10.0), ("Adam", 1e-3), ("Adam", 1e-2),
                      ("Adam", 1e-4)}  # fmt: skip
    assert study.chosen_learning_rates(cfg, records) == {"SGD": 1.0, "Adam": 1e-3}
    finals = [r for r in records if r["phase"] == "final"]
    assert sorted((r["optimizer"], r["seed"]) for r in finals) == sorted(
        (n, s) for n in ("SGD", "Adam") for s in (1, 2, 3))  # three fresh seeds, none is the search's 0
    rows = {r["optimizer"]: r for r in study.summarize(cfg, records)}
    assert rows["SGD"]["seeds"] == 3 and rows["SGD"]["lr_added"] == 2 and rows["SGD"]["lr_at_edge"] == ""
    assert rows["SGD"]["test_acc_mean"] == pytest.approx(0.9 - 0.02)  # seeds 1-3: 0.89, 0.88, 0.87
    assert rows["SGD"]["test_acc_se"] == pytest.approx(0.01 / np.sqrt(3))
    status = study.study_status(cfg, records)
    assert status["complete"] and status["label"] == "complete: 13 of 13 runs"
    table = study.search_table(cfg, records)
    assert all("test" not in k for row in table for k in row)
    chosen_row = next(r for r in table if r["optimizer"] == "SGD" and r["chosen"])
    assert chosen_row["lr"] == 1.0 and chosen_row["added"]
    assert chosen_row["val_acc_se"] == pytest.approx(np.sqrt(0.9 * 0.1 / 400))


def test_the_search_never_touches_the_test_set(cfg, tiny_data):
    no_test = {"train": tiny_data["train"], "val": tiny_data["val"]}  # a search run would fail if it read "test"
    record = study.train_one(cfg, study.RunSpec("search", "SGD", 0.1, 0), no_test, progress=False)
    assert "test_acc" not in record and "test_loss" not in record and record["val_size"] == len(tiny_data["val"])
    final = study.train_one(cfg, study.RunSpec("final", "SGD", 0.1, 1), tiny_data, progress=False)
    assert 0 <= final["test_acc"] <= 1


def test_one_decoupled_weight_decay_for_every_optimizer():
    torch.manual_seed(0)
    w0 = torch.randn(5)

    def run(cls, steps=4, schedule=None, **kwargs):
        w = torch.nn.Parameter(w0.clone())
        opt = cls([w], **kwargs)
        for t in range(steps):
            if schedule:
                opt.param_groups[0]["lr"] = kwargs["lr"] * schedule(t)
            opt.zero_grad()
            (w**2).sum().backward()
            opt.step()
        return w.detach()

    lam, lr = 0.01, 0.003
    # Adam with the study's decay is AdamW with lambda_AdamW = lambda / lr
    decayed = run(study.decoupled_weight_decay(optim.Adam, lam), lr=lr)
    torch.testing.assert_close(decayed, run(optim.AdamW, lr=lr, weight_decay=lam / lr))
    # the shrink follows the schedule's factor, not the optimizer's rate: at a zero gradient SGD shrinks by (1 - lam)^t
    w = torch.nn.Parameter(torch.ones(3))
    opt = study.decoupled_weight_decay(optim.SGD, lam)([w], lr=0.3)
    for factor in (1.0, 0.5):
        opt.param_groups[0]["lr"] = 0.3 * factor
        w.grad = torch.zeros(3)
        opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), (1 - lam) * (1 - 0.5 * lam)))
    assert study.decoupled_weight_decay(optim.SGD, 0.0) is optim.SGD
    cfg = study.fast_config()
    with pytest.raises(ValueError, match="weight decay of its own"):
        dataclasses.replace(cfg, optimizer_settings=dict(cfg.optimizer_settings, AdamW=("AdamW", {"weight_decay": 0.05})))
    with pytest.raises(ValueError, match="0 <= weight_decay < 1"):
        dataclasses.replace(cfg, weight_decay=1.5)


def test_schedule_free_runs_at_a_constant_rate_with_its_own_warmup(tiny_data, monkeypatch):
    base = study.StudyConfig(mode="test", model="small_cnn", model_kwargs={"widths": (4, 4, 4)}, epochs=2,
                             batch_size=20, final_seeds=1, augment=False, optimizers=("Adam",),
                             lr_grids={"Adam": (1e-3,)})  # fmt: skip
    cfg = study.with_optimizers(base, "ScheduleFreeAdamW")
    seen = {}
    real = study.protocol.train_variant

    def spy(model, variant, *args, **kwargs):
        seen[variant.optimizer.__name__] = variant
        seen["run"] = real(model, variant, *args, **kwargs)
        return seen["run"]

    modes, real_accuracies = [], study.protocol.example_accuracies

    def spy_accuracies(*args, **kwargs):  # the validation error is measured at the point validated
        modes.append(seen["run"].optimizer.param_groups[0].get("train_mode"))
        return real_accuracies(*args, **kwargs)

    monkeypatch.setattr(study.protocol, "train_variant", spy)
    monkeypatch.setattr(study.protocol, "example_accuracies", spy_accuracies)
    free = study.train_one(cfg, study.RunSpec("final", "ScheduleFreeAdamW", 0.01, 1), tiny_data, progress=False)
    adam = study.train_one(cfg, study.RunSpec("final", "Adam", 0.01, 1), tiny_data, progress=False)
    assert seen["ScheduleFreeAdamW"].schedule is None and seen["Adam"].schedule is not None
    assert seen["ScheduleFreeAdamW"].optimizer_kwargs["warmup_steps"] == 1  # a tenth of 8 steps, at least 1
    assert {e["lr"] for e in free["history"]["epochs"]} == {0.01}  # constant
    assert len({e["lr"] for e in adam["history"]["epochs"]}) == 2  # warm-up and decay
    assert study.is_schedule_free(optim.ScheduleFreeSGD) and not study.is_schedule_free(optim.Adam)
    assert modes == [False, None]  # schedule-free: at its averaged point (eval mode); Adam has no modes


def _per_seed_records(cfg, values: dict[str, list[float]]) -> list[dict]:
    records = [fake_record(cfg, "search", name, lr, 0, 0.5 + 0.1 * (lr == cfg.lr_grids[name][1]))
               for name in cfg.optimizers for lr in cfg.lr_grids[name]]  # fmt: skip
    for name, accs in values.items():
        for seed, acc in enumerate(accs, start=1):
            records.append(fake_record(cfg, "final", name, cfg.lr_grids[name][1], seed, acc, test_acc=acc))
    return records


def test_the_best_of_several_is_held_to_a_bonferroni_corrected_line():
    cfg = study.StudyConfig(mode="test", model="small_cnn", epochs=1, final_seeds=3, grid_extensions=0,
                            optimizers=("SGD", "Momentum", "Adam"),
                            lr_grids={"SGD": (0.1, 0.3, 1.0), "Momentum": (0.01, 0.03, 0.1), "Adam": (1e-3, 3e-3, 1e-2)})  # fmt: skip
    # Adam - SGD per seed: 0.020, 0.030, 0.010 -> mean 0.020, se 0.0058: 3.5 s.e., ahead.
    # Adam - Momentum: 0.014, 0.004, 0.0 -> mean 0.006, se 0.0042: 1.4 s.e., inconclusive
    records = _per_seed_records(cfg, {"SGD": [0.60, 0.59, 0.61], "Momentum": [0.606, 0.616, 0.62],
                                      "Adam": [0.62, 0.62, 0.62]})  # fmt: skip
    result = study.best_of(cfg, records)
    assert result["best"] == "Adam" and result["k"] == pytest.approx(corrected_k(2)) and not result["resolved"]
    verdicts = {r["other"]: r["verdict"] for r in result["rows"]}
    assert verdicts == {"SGD": "ahead", "Momentum": "inconclusive"}
    # a difference of 2.1 s.e. passes the plain 2 s.e. line but not the corrected one (2.28 for two comparisons)
    d = study.paired(cfg, records, "Adam", "SGD")
    shifted = dataclasses.replace(d, per_seed=tuple(x - d.mean + 2.1 * d.se for x in d.per_seed))
    assert study.claim_verdict(shifted) == "supported"
    assert study.claim_verdict(shifted, k=corrected_k(2)) == "inconclusive"
    assert study.claim_verdict(dataclasses.replace(d, per_seed=tuple(-x for x in d.per_seed))) == "contradicted"
    assert corrected_k(1) == pytest.approx(2.0) and corrected_k(5) > corrected_k(2) > 2
    # lower is better (a loss): the best has the lowest mean, and a positive difference favours it
    loss = study.best_of(cfg, records, key="test_loss", lower_is_better=True)
    assert loss["best"] == "Adam" and all(r["difference"].mean >= 0 for r in loss["rows"])


def test_a_diverged_seed_is_left_out_of_the_pair_and_named():
    cfg = study.StudyConfig(mode="test", model="small_cnn", epochs=1, final_seeds=4, grid_extensions=0,
                            optimizers=("SGD", "Adam"),
                            lr_grids={"SGD": (0.1, 0.3, 1.0), "Adam": (1e-3, 3e-3, 1e-2)})  # fmt: skip
    records = _per_seed_records(cfg, {"SGD": [0.30, 0.31, 0.29, 0.30], "Adam": [0.44, 0.45, 0.44, 0.45]})
    first_sgd = next(r for r in records if r["phase"] == "final" and r["optimizer"] == "SGD" and r["seed"] == 1)
    first_sgd.update(test_acc=None, test_loss=None)  # seed 1 of SGD diverged: no accuracy
    first_sgd["history"]["diverged"] = True
    assert study.diverged_seeds(cfg, records) == {"SGD": [1], "Adam": []}
    d = study.paired(cfg, records, "Adam", "SGD")
    assert d.n_seeds == 3 and d.mean == pytest.approx(0.44 / 3)  # seeds 2-4: 0.14, 0.15, 0.15 (a NaN made it "inconclusive")
    result = study.best_of(cfg, records)
    (row,) = result["rows"]
    assert result["best"] == "Adam" and row["verdict"] == "ahead" and row["diverged"] == {"SGD": [1]}
    assert study.comparison_line("Adam", row) == (f"Adam - SGD       {row['difference']:+.3f} -> ahead "
                                                   "(SGD diverged on seed 1: left out)")  # fmt: skip


def test_optimizers_flag_wall_time_status_and_describe(tmp_path, cfg, tiny_data, monkeypatch, capsys, request):
    tiny = dataclasses.replace(cfg, epochs=1, final_seeds=2, grid_extensions=0)
    monkeypatch.setattr(study.cli, "config_for", lambda mode, task="cifar10": tiny)
    monkeypatch.setattr(study.protocol, "load_data", lambda c: tiny_data)
    out = tmp_path / "s"
    assert study.main(["run", "--mode", "fast", "--out", str(out), "--no-progress", "--optimizers", "Adam,Lion"]) == 0
    stored = study.load_config(out)
    assert stored.optimizers == ("Adam", "Lion") and set(stored.lr_grids) == {"Adam", "Lion"}
    assert stored.lr_grids["Lion"] == study.LR_GRIDS["Lion"]
    entry = json.loads((out / "provenance.json").read_text())[-1]
    assert entry["wall_s"] >= 0 and entry["cores"] >= 1 and entry["machine"]
    n = len(study.LR_GRIDS["Lion"]) + 2 + 2 * 2
    assert entry["status"]["label"] == f"complete: {n} of {n} runs"
    text, described, records = study.describe_study(out)
    assert described == stored and "complete:" in text and "| Lion |" in text and "± " in text
    with pytest.raises(SystemExit):
        study.main(["run", "--out", str(tmp_path / "x"), "--optimizers", "Adam,Shampoo"])
    assert "--optimizers takes names from" in capsys.readouterr().err

    # interrupted (Ctrl-C or kill): exit 130, the status says how far it got
    request.getfixturevalue("interrupt_third_run")
    part = tmp_path / "partial"
    assert study.main(["run", "--mode", "fast", "--out", str(part), "--no-progress"]) == 130
    entry = json.loads((part / "provenance.json").read_text())[-1]
    # the search may still extend a grid, so the count is a lower bound
    assert entry["status"]["label"] == "partial: 2 of at least 8 runs" and not entry["status"]["complete"]
    text, _, _ = study.describe_study(part)
    assert "partial: 2 of at least 8 runs" in text and "val acc ± s.e." in text and "test acc" not in text.split("search so far")[1]
    assert "absent" in study.describe_study(tmp_path / "nothing")[0]


def test_a_protocol_1_study_is_never_read_as_protocol_2(tmp_path, cfg):
    study.write_config(cfg, tmp_path)
    fields = json.loads((tmp_path / "study-config.json").read_text())
    del fields["protocol"]  # what course_lib wrote before protocol 2
    (tmp_path / "study-config.json").write_text(json.dumps(fields))
    with pytest.raises(ValueError, match="protocol 1 is not run"):
        study.load_config(tmp_path)
    with pytest.raises(study.ConfigMismatch, match="cannot be read as a study configuration"):
        study.write_config(cfg, tmp_path)
    assert "protocol" in json.dumps(cfg.fingerprint.__doc__)  # the docstring says the version is always in
    assert dataclasses.replace(cfg, final_seeds=4).fingerprint() != cfg.fingerprint()
    with pytest.raises(ValueError, match="final_seeds_from must be at least 1"):
        dataclasses.replace(cfg, final_seeds_from=0)
