"""A sample GUI test suite for the pytest plugin (``pytest --impromptu tests/gui_sample/sample_gui.py``), run by
tests/test_pytest_plugin.py. Not collected by the project's own run: its file is not named ``test_*.py``."""
