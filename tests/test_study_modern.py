"""The study with chapter 12's optimizers: opt-in names, their settings and grids, the default
lists and fingerprints unchanged, and a Muon run that splits the model (tiny synthetic data, CPU)."""

import dataclasses
import json

import numpy as np
import pytest

from course_lib import optim, study

MODERN = ("Lion", "Adafactor", "Muon", "NAdam", "RAdam", "ScheduleFreeAdamW", "ScheduleFreeSGD")


def test_the_registries_know_the_modern_names_but_the_defaults_compare_the_classic_six():
    for name in MODERN:
        class_name, _ = study.OPTIMIZER_SETTINGS[name]
        assert class_name in study.OPTIMIZER_CLASSES and name in study.LR_GRIDS and name in study.TEXT_LR_GRIDS
    assert study.CLASSIC_OPTIMIZERS == ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW")
    # one weight decay for all makes AdamW's rule Adam's: the configurations compare the other six
    assert study.COMPARED_OPTIMIZERS == study.CLASSIC_OPTIMIZERS[:-1]
    for cfg in (study.fast_config(), study.full_config(), study.text_full_config(), study.reference_config(),
                study.text_reference_config()):
        assert cfg.optimizers == study.COMPARED_OPTIMIZERS and cfg.weight_decay == 0
        assert set(cfg.optimizer_settings) == set(cfg.lr_grids) == set(study.CLASSIC_OPTIMIZERS)
    assert study.OPTIMIZER_CLASSES["Lion"] is optim.Lion and study.OPTIMIZER_CLASSES["MuonWithAdamW"] is optim.MuonWithAdamW
    # no optimizer brings a decay of its own (AdamW's and Muon's classes would, unless told 0)
    assert all(fixed.get("weight_decay", 0) == 0 for _, fixed in study.OPTIMIZER_SETTINGS.values())


def test_stored_configurations_load_to_the_same_fingerprint():
    # a study-config.json read back (JSON has no tuples) gives the fingerprint it was written with
    for cfg in (study.fast_config(), study.full_config(), study.text_fast_config(), study.text_full_config(),
                study.reference_config(), study.text_reference_config()):
        fields = json.loads(json.dumps(dataclasses.asdict(cfg)))
        fields["optimizers"] = tuple(fields["optimizers"])
        assert study.StudyConfig(**fields).fingerprint() == cfg.fingerprint()


def test_with_optimizers_adds_settings_and_the_task_s_grid():
    cfg = study.with_optimizers(study.fast_config(), "Lion", "Muon")
    assert cfg.optimizers == study.COMPARED_OPTIMIZERS + ("Lion", "Muon")
    assert cfg.lr_grids["Lion"] == study.LR_GRIDS["Lion"]
    assert study.optimizer_for(cfg, "Muon") == (optim.MuonWithAdamW, {"weight_decay": 0.0})
    assert cfg.fingerprint() != study.fast_config().fingerprint()
    text = study.with_optimizers(study.text_fast_config(), "Adafactor", "Adafactor")
    assert text.optimizers[-1] == "Adafactor" and text.optimizers.count("Adafactor") == 1
    assert text.lr_grids["Adafactor"] == study.TEXT_LR_GRIDS["Adafactor"]
    with pytest.raises(ValueError, match="unknown optimizers"):
        study.with_optimizers(study.fast_config(), "Shampoo")
    with pytest.raises(ValueError, match="unknown optimizers"):  # without with_optimizers: not in the settings
        study.StudyConfig(mode="x", model="small_cnn", optimizers=("Lion",))


@pytest.mark.parametrize("name", MODERN)
def test_every_modern_optimizer_trains_in_the_study(name, tiny_data):
    base = study.StudyConfig(mode="test", model="small_cnn", model_kwargs={"widths": (4, 4, 4)}, epochs=1,
                             batch_size=40, final_seeds=1, augment=False, optimizers=("Adam",),
                             lr_grids={"Adam": (1e-3,)})  # fmt: skip
    cfg = study.with_optimizers(base, name)
    lr = cfg.lr_grids[name][1]
    record = study.train_one(cfg, study.RunSpec("search", name, lr, 0), tiny_data, progress=False)
    assert not record["history"]["diverged"] and np.isfinite(record["final_val_acc"])
    final = study.train_one(cfg, study.RunSpec("final", name, lr, 1), tiny_data, progress=False)
    assert np.isfinite(final["test_loss"])
