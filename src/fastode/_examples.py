"""Run the example scripts, for ``fastode demo --examples``.

Each script in ``examples/`` prints its error against a closed form and saves
a PNG plot when matplotlib is installed. A wheel installs the scripts in
``fastode/examples``; a source checkout has them in ``examples/`` at its root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["examples_dir", "run_examples"]

#: Seconds one script may run before it counts as failed.
TIMEOUT = 600

#: Runs the script at sys.argv[1] as ``__main__`` with the default SIGPIPE
#: action. Python ignores SIGPIPE, so without this a script whose reader
#: closed stdout (``fastode demo --examples | head``) prints a
#: BrokenPipeError traceback. With it, the script ends quietly, as other
#: Unix tools do.
RUNNER = (
    "import runpy, signal, sys\n"
    "if hasattr(signal, 'SIGPIPE'):\n"
    "    signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def examples_dir() -> Path:
    """Return the folder of the example scripts.

    Raises
    ------
    FileNotFoundError
        When neither the installed copy nor a source checkout's folder exists.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "examples", package.parent.parent / "examples"):
        if (candidate / "_plot.py").is_file():
            return candidate
    msg = (
        f"the example scripts were not found in {package / 'examples'} or "
        f"{package.parent.parent / 'examples'}; reinstall fastode or run from a source checkout"
    )
    raise FileNotFoundError(msg)


def run_examples(output_dir: str | os.PathLike = ".", directory: Path | None = None) -> int:
    """Run every example script and return the number that failed.

    Each script runs in its own Python process with ``output_dir`` as its
    working folder and ``FASTODE_EXAMPLE_DIR``, so its plot lands there. The
    scripts import the fastode that runs this function.
    """
    directory = examples_dir() if directory is None else Path(directory)
    scripts = sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, FASTODE_EXAMPLE_DIR=str(output_dir))
    # The examples folder comes first so `from _plot import save_figure` works.
    paths = [str(directory), package_root, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        try:
            result = subprocess.run(
                [sys.executable, "-c", RUNNER, str(script)], cwd=output_dir, env=env, timeout=TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            print(f"{script.name} failed: timed out after {TIMEOUT} s", flush=True)
            failed += 1
            continue
        if result.returncode != 0:
            print(f"{script.name} failed with exit status {result.returncode}", flush=True)
            failed += 1
    print(f"{len(scripts) - failed} of {len(scripts)} examples ran without error")
    return failed
