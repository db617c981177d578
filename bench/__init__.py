"""impromptu's benchmarks: run them with ``make bench`` (or ``.venv/bin/python bench/run.py --help``)."""
