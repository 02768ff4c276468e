"""Run a script from examples/ in a subprocess, against the fastode that the
tests imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fastode

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: The folder holding the imported fastode: src/ in a development tree, or
#: site-packages in CI, where src/ has no compiled _core.
PACKAGE_ROOT = str(Path(fastode.__file__).resolve().parent.parent)


def run_example(script: str, tmp_path: Path, *extra_paths: Path) -> subprocess.CompletedProcess:
    """Run examples/`script` in `tmp_path`, where it writes its plot.

    `extra_paths` go on PYTHONPATH after the package root and ahead of
    site-packages, so a stub package there hides an installed one.
    """
    env = dict(os.environ, FASTODE_EXAMPLE_DIR=str(tmp_path))
    path = [PACKAGE_ROOT, *map(str, extra_paths), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
