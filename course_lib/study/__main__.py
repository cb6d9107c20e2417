"""``python -m course_lib.study run|merge|summary ...``: see :mod:`course_lib.study.cli`."""

import sys

from .cli import main

sys.exit(main())
