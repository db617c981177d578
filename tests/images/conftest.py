"""tests/images/ needs the images built and compose/docker-compose.yml up, which `make images-test` (images/test.sh)
does before it runs them: elsewhere (`make test`, `pytest tests/`) these tests are not even collected."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("IMPROMPTU_IMAGES_TEST") == "1" else ["test_*.py"]
