"""Teaching with the course: showing code, checking answers, student copies, slides, the site.

==================  ========================================================================
``show``            a function's source (or one marked part of it), highlighted in a notebook
``exercises``       answer checkers: PASS, or the first mismatch and a hint
``answers``         comparing an answer with the expected one, and describing the difference
``references``      reference answers the check cells use without showing them
``student_copies``  notebooks with the solutions replaced by placeholders (``make student-copies``)
``lab``             JupyterLab on the students' working copy ``work/`` or, for instructors, the
                    tracked notebooks with autosave off (``make lab``, ``make lab-instructor``)
``slides``          slide metadata by the course's rule, and the presentation copy (``make slides``)
``explorers``       sliders in JupyterLab with the figure at one setting as the static fallback
``site``            the static HTML course: every notebook executed and exported (``make site``)
==================  ========================================================================

Notebooks write ``from course_lib.teaching import exercises, show``.
"""

from . import exercises
from .exercises import Case, CheckResult, check_function, check_optimizer_step
from .show import show

__all__ = ["exercises", "show", "Case", "CheckResult", "check_function", "check_optimizer_step"]
