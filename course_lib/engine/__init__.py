"""Training on real data: CIFAR-10 from disk to device, the networks, the loop, fair comparisons.

=====================  =====================================================================
``cifar10``            find, verify, decode and cache CIFAR-10; class-balanced subsets, splits
``cifar10_formats``    the official pickled batches and image folders, read and checked
``cifar10_cache``      the decoded-array cache (one ``.npz`` per split and source)
``cifar10_archives``   write small archives in either format (tests, examples, own data)
``text``               tiny Shakespeare: download, verify, encode, cache; windows on the device
``models``             softmax regression, MLP, small CNN, the airbench-style CNN, whitening,
                       the small GPT-style transformer
``device_data``        images on the device as uint8, batches by index, normalised there
``augment``            flips, translations, rotations on the device, from an explicit generator
``loop``               the training loop, evaluation, test-time augmentation, ``History``
``compare``            train several variants from the same initial weights on the same batches
``paired``             paired differences over seeds and examples: is A better than B beyond the noise?
``batchnorm``          batch-norm statistics recomputed at the current weights (averaged weights)
=====================  =====================================================================

Data flows ``cifar10`` -> arrays -> ``device_data`` (on the device once) -> ``loop`` (each step:
index a batch, augment, forward, backward, optimizer step) -> ``History``; for text, ``text``
-> tokens -> ``TextData`` (on the device once) -> the same ``loop``.
"""

from . import augment, batchnorm, cifar10, cifar10_archives, compare, device_data, loop, models, paired, text
from .cifar10 import CLASSES, DataError, load_cifar10, locate_cifar10
from .compare import (Run, Variant, compare_optimizers, compare_schedules, compare_variants, initial_weights,
                      train_variant)
from .device_data import DeviceData, cifar10_on_device
from .loop import EpochRecord, History, evaluate, example_accuracies, train, tta_logits
from .text import Corpus, TextData, load_shakespeare, text_on_device

__all__ = [
    "augment", "batchnorm", "cifar10", "cifar10_archives", "compare", "device_data", "loop", "models", "paired", "text",
    "Corpus", "TextData", "load_shakespeare", "text_on_device",
    "CLASSES", "DataError", "load_cifar10", "locate_cifar10",
    "DeviceData", "cifar10_on_device", "EpochRecord", "History", "train", "evaluate", "example_accuracies", "tta_logits",
    "Variant", "Run", "initial_weights", "train_variant", "compare_variants", "compare_optimizers",
    "compare_schedules",
]  # fmt: skip
