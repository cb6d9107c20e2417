# One command to set up and open the course, one to run the tests (see README.md).
# The first use creates a virtual environment in .venv from the lock file; later uses reuse it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup lab lab-instructor slides test test-browser test-full site student-copies clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[lab,test]'
	touch $(STAMP)

## open the course in JupyterLab (the main job), in the students' working copy work/ (made from
## notebooks/ on first use, solutions removed; git ignores it). LAB_ARGS passes options to
## JupyterLab, e.g. LAB_ARGS=--port=9999; LAB_DIR=elsewhere puts the working copy elsewhere.
LAB_DIR ?=
lab: setup
	$(BIN)/python -m course_lib.teaching.lab $(if $(LAB_DIR),--dir=$(LAB_DIR)) $(LAB_ARGS)

## present: a fresh presentation copy in slides/ (a slide per heading, no solutions), then Alt+R
slides: setup
	$(BIN)/python -m course_lib.teaching.lab --slides $(if $(LAB_DIR),--dir=$(LAB_DIR)) $(LAB_ARGS)

## open the tracked notebooks, with the solutions, autosave off (for instructors)
lab-instructor: setup
	$(BIN)/python -m course_lib.teaching.lab --instructor $(LAB_ARGS)

## unit tests + every notebook under nbval, in fast mode
test: setup
	COURSE_FAST=1 $(BIN)/python -m pytest --ignore=tests/browser

## the course in a real browser (Debian's chromium + Playwright): JupyterLab, a RISE slide, the site;
## screenshots in tests/browser/screenshots/ (about 4-5 minutes on 2 busy cores)
test-browser: setup
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[browser]'
	COURSE_FAST=1 $(BIN)/python -m pytest tests/browser

## every notebook under nbval in full mode (slower; what a student runs)
test-full: setup
	COURSE_FAST=0 $(BIN)/python -m pytest notebooks

## execute every notebook and write a static HTML course into site/ (MODE=full for full mode)
MODE ?= fast
site: setup
	$(BIN)/python -m course_lib.teaching.site --mode $(MODE) --out site

## write student copies (solution cells emptied) into student/
student-copies: setup
	$(BIN)/python -m course_lib.teaching.student_copies --src notebooks --dst student

clean-venv:
	rm -rf $(VENV)
