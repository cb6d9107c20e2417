"""course_lib.config: the one place that reads the environment."""

import io
import sys

import numpy as np
import pytest
import torch

from course_lib import config


@pytest.mark.parametrize("value,fast", [("1", True), ("true", True), ("0", False), ("", False), ("no", False)])
def test_fast_mode_and_pick(monkeypatch, value, fast):
    monkeypatch.setenv("COURSE_FAST", value)
    assert config.is_fast() is fast
    assert config.pick(full=20, fast=2) == (2 if fast else 20)


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_bad_fast_value(monkeypatch, value):
    monkeypatch.setenv("COURSE_FAST", value)
    with pytest.raises(config.ConfigError, match=f"COURSE_FAST='{value}' is not a known value: use 1 .* 0 "):
        config.is_fast()


def test_device(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")
    monkeypatch.delenv("COURSE_DEVICE")
    assert config.device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            config.device()


@pytest.mark.parametrize("value", ["banana", "mps", "cuda:7"])
def test_unusable_device_names_the_variable(monkeypatch, value):
    if value == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    if value == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has eight GPUs")
    monkeypatch.setenv("COURSE_DEVICE", value)
    with pytest.raises(config.ConfigError, match=f"^COURSE_DEVICE='{value}' "):
        config.device()


def test_data_dir_that_is_a_file_or_missing_names_the_variable(monkeypatch, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    monkeypatch.setenv("COURSE_DATA_DIR", str(a_file))
    with pytest.raises(config.ConfigError, match="COURSE_DATA_DIR=.*notes.txt' is a file, not a directory"):
        config.data_dir()
    monkeypatch.setenv("COURSE_DATA_DIR", str(a_file / "data"))
    with pytest.raises(config.ConfigError, match="COURSE_DATA_DIR=.* lies under .*notes.txt', which is a file"):
        config.data_dir()
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "mistyped"))
    with pytest.raises(config.ConfigError, match="COURSE_DATA_DIR=.*mistyped' does not exist"):
        config.data_dir()
    assert not (tmp_path / "mistyped").exists()  # nothing created for a download to fill
    with pytest.raises(config.ConfigError, match="data_dir=.*notes.txt' is a file"):
        config.data_dir(a_file)


def test_data_dir_precedence(monkeypatch, tmp_path):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "env"))
    assert config.data_dir() == tmp_path / "env" and (tmp_path / "env").is_dir()
    assert config.data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert config.data_dir() == config.repo_root() / "data"


def test_seed_everything_repeats():
    config.seed_everything(7)
    a = (np.random.rand(), torch.rand(3))
    gen = config.seed_everything(7)
    b = (np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert torch.equal(torch.rand(2, generator=gen), torch.rand(2, generator=torch.Generator().manual_seed(7)))


def test_progress_rule(monkeypatch):
    assert config.show_progress(True) and not config.show_progress(False)
    monkeypatch.setenv("COURSE_PROGRESS", "1")
    assert config.show_progress(None)
    monkeypatch.setenv("COURSE_PROGRESS", "0")
    assert not config.show_progress(None)
    monkeypatch.setenv("COURSE_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="COURSE_PROGRESS"):
        config.show_progress(None)
    monkeypatch.delenv("COURSE_PROGRESS")
    monkeypatch.setenv("CI", "true")
    assert not config.show_progress(None)
    monkeypatch.setenv("CI", "0")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not config.show_progress(None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert config.show_progress(None)


def test_seeded_repeats_draws_and_restores_the_callers_generator():
    torch.manual_seed(7)
    expected_after = torch.rand(2)
    torch.manual_seed(7)
    with config.seeded(0):
        a = torch.rand(3)
    with config.seeded(0):
        b = torch.rand(3)
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(2), expected_after)  # as if the blocks had never run
