# The two commands of the README: `make demo` turns the bundled novel into a character graph, `make test` runs the tests.
# Both create or reuse .venv (scripts/setup.sh).
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test test-fast
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) run_pipeline.py books

# pytest exits 5 when it collects nothing; that is not a failure of the code under test.
# The HTML-view tests need Debian's chromium; without root they are skipped unless COLLAB_REQUIRE_CHROMIUM is set.
test: setup
	@bash scripts/install_chromium.sh || echo "chromium not installed: the headless HTML-view tests will be skipped" >&2
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-fast: setup
	$(PY) -m pytest -q -m "not model and not integration" $(PYTEST_ARGS)
