"""Opening the course in JupyterLab: students in a working copy, instructors on the solutions.

``make lab`` runs ``python -m course_lib.teaching.lab``: on first use it writes the student
copies of ``notebooks/`` (solutions emptied, :mod:`course_lib.teaching.student_copies`) into
the git-ignored working copy ``work/`` and opens JupyterLab there. Later uses keep every file a
student changed and only add chapters that are new. The tracked notebooks are never opened, so
JupyterLab's autosave cannot change them.

``make slides`` (``--slides``) writes the presentation copy of the notebooks
(:func:`course_lib.teaching.slides.write_presentation`: a slide per heading, solutions and checks
left out, 1280x720 with scrolling as the fallback) into the git-ignored ``slides/``, remade on
every start, and opens it: run the set-up cells, then press Alt+R to present.

``make lab-instructor`` (``--instructor``) opens the tracked ``notebooks/`` with the solutions,
with autosave turned off (JupyterLab reads its user settings from a folder inside the virtual
environment, where ``autosave`` is ``false``): a notebook there changes only when the
instructor saves it, and is committed without outputs.

JupyterLab refuses to run as root unless given ``--allow-root``; containers often run as root,
so that flag is added, with a note, when the effective user id is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import config
from ..files import atomic_write_text
from .slides import write_presentation
from .student_copies import make_working_copy

__all__ = ["WORK_DIR", "SLIDES_DIR", "AUTOSAVE_OFF", "lab_command", "instructor_settings_dir", "main"]

WORK_DIR = "work"
"""The students' working copy, relative to the repository root (git-ignored)."""

SLIDES_DIR = "slides"
"""The presentation copy, relative to the repository root (git-ignored, remade by ``--slides``)."""

AUTOSAVE_OFF = {"@jupyterlab/docmanager-extension": {"plugin.jupyterlab-settings": {"autosave": False}}}
"""JupyterLab user settings for the instructor: folder -> file -> settings."""


def lab_command(root_dir: str | os.PathLike, extra_args: Sequence[str] = (), *, as_root: bool,
                jupyter: str = "jupyter") -> list[str]:  # fmt: skip
    """The ``jupyter lab`` command line serving ``root_dir``; ``--allow-root`` when ``as_root``."""
    command = [jupyter, "lab", f"--ServerApp.root_dir={root_dir}"]
    if as_root and "--allow-root" not in extra_args:
        command.append("--allow-root")
    return command + list(extra_args)


def instructor_settings_dir(venv: str | os.PathLike) -> Path:
    """Write JupyterLab user settings with autosave off into ``venv``; return that folder."""
    folder = Path(venv) / "share" / "course-instructor-settings"
    for plugin, files in AUTOSAVE_OFF.items():
        for name, settings in files.items():
            path = folder / plugin / name
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(settings, indent=2) + "\n")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.teaching.lab", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--instructor", action="store_true", help="open the tracked notebooks (solutions), autosave off")
    parser.add_argument("--slides", action="store_true", help="open a fresh presentation copy (slides/) for the slideshow")
    parser.add_argument("--dir", default=None, help=f"the students' working copy (default: {WORK_DIR}/ in the repository)")
    parser.add_argument("--dry-run", action="store_true", help="prepare the folder and print the command, do not start it")
    args, lab_args = parser.parse_known_args(argv)
    root = config.repo_root()
    notebooks = root / "notebooks"
    env = dict(os.environ)
    if args.instructor:
        lab_dir = notebooks
        env["JUPYTERLAB_SETTINGS_DIR"] = str(instructor_settings_dir(sys.prefix))
        print(f"Instructor mode: the tracked notebooks in {lab_dir}, with the solutions. Autosave is off: "
              "save with Ctrl+S, and clear the outputs before committing.")  # fmt: skip
    elif args.slides:
        lab_dir = Path(args.dir) if args.dir else root / SLIDES_DIR
        written = write_presentation(notebooks, lab_dir)
        print(f"Presentation copy of {len(written)} chapters in {lab_dir} (remade on every `make slides`: "
              "changes there are not kept). Open a chapter, run it (Run > Run All Cells), press Alt+R "
              "to present; Space/Shift+Space next/previous, Alt+R again to leave.")  # fmt: skip
    else:
        lab_dir = Path(args.dir) if args.dir else root / WORK_DIR
        added, kept = make_working_copy(notebooks, lab_dir)
        if added and not kept:
            print(f"Created your working copy {lab_dir} ({len(added)} notebooks, exercise solutions removed).")
        elif added:
            print(f"Added {len(added)} new chapter(s) to your working copy {lab_dir}: "
                  + ", ".join(p.name for p in added))  # fmt: skip
        print(f"Working in {lab_dir}: your changes stay there (git ignores it). "
              "To start a chapter afresh, delete its file there and run `make lab` again.")
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if as_root:
        print("Note: running as root (a container?), so JupyterLab gets --allow-root.")
    beside = Path(sys.executable).with_name("jupyter")  # the virtual environment's, when there is one
    command = lab_command(lab_dir, lab_args, as_root=as_root, jupyter=str(beside) if beside.exists() else "jupyter")
    if args.dry_run:
        print(" ".join(command))
        return 0
    sys.stdout.flush()
    os.execvpe(command[0], command, env)
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
