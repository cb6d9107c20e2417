"""pytest configuration shared by the unit tests and the nbval notebook runs.

Tests run in fast mode unless COURSE_FAST is set explicitly (``COURSE_FAST=0`` for full mode),
without progress bars unless COURSE_PROGRESS is set. The notebooks' kernels inherit this
environment.
"""

import os

os.environ.setdefault("COURSE_FAST", "1")
# Progress-bar widgets in executed notebooks send many messages, which can overflow the
# kernel's output channel while nbval waits for a long cell; the test runner turns them off.
os.environ.setdefault("COURSE_PROGRESS", "0")
# Idle OpenMP threads sleep instead of spinning: on a busy machine spinning threads can make
# small-model training several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
