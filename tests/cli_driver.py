"""The real `tpsearch` command line, with the hashing encoder as its model (for tests that run
it as a separate process, where loading a model is beside the point).

    python tests/cli_driver.py watch docs ...    # as `tpsearch watch docs ...`
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.corpus import using
from tests.fakes import HashingEncoder
from tpsearch.collection import facade

if __name__ == "__main__":
    facade.default_encoder_factory = using(HashingEncoder())
    from tpsearch.cli import main

    sys.argv[0] = "tpsearch"
    main()
