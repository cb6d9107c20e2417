"""What the unit tests share: the Agg backend, figures closed after each test, one tiny image set."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from course_lib.engine import DeviceData  # noqa: E402
from course_lib.problems import brightest_channel_images  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    """No test leaves a figure open for the next one."""
    yield
    plt.close("all")


def _toy_data(n: int = 96, seed: int = 0, size: int = 32, classes: int = 3) -> DeviceData:
    return DeviceData.from_numpy(*brightest_channel_images(n, seed, classes, size), device="cpu")


@pytest.fixture
def toy_data():
    """``toy_data(n=96, seed=0, size=32, classes=3)``: the tiny image set whose label is the
    brightest channel (:func:`course_lib.problems.brightest_channel_images`) as CPU DeviceData."""
    return _toy_data


@pytest.fixture(scope="module")
def tiny_data():
    """A tiny CIFAR-shaped study data set (CPU): ``{"train": 80, "val": 40, "test": 40}`` images of
    10 classes, the class marking which tenth of the image is bright; the same in every module."""
    import numpy as np

    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 80, (n, 32, 32, 3)).astype(np.uint8)
        for i, c in enumerate(labels):  # class = which tenth of the image is bright
            images[i, 3 * c : 3 * c + 3] += 150
        return images, labels

    train = DeviceData.from_numpy(*split(80), device="cpu")
    return {"train": train, "val": DeviceData.from_numpy(*split(40), device="cpu", stats=train.stats),
            "test": DeviceData.from_numpy(*split(40), device="cpu", stats=train.stats)}  # fmt: skip


@pytest.fixture
def interrupt_third_run(monkeypatch):
    """Make the study's third training run raise KeyboardInterrupt (as Ctrl-C would) and every
    other run train as usual; returns a function that restores the real ``train_one``."""
    from course_lib import study

    real, calls = study.protocol.train_one, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study.protocol, "train_one", flaky)
    return lambda: monkeypatch.setattr(study.protocol, "train_one", real)
