"""pytest configuration shared by the unit tests and the nbval notebook runs.

Tests run in fast mode unless COURSE_FAST is set explicitly (``COURSE_FAST=0`` for full mode).
The notebooks' kernels inherit this environment.
"""

import os

os.environ.setdefault("COURSE_FAST", "1")
