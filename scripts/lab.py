"""Open the course in JupyterLab (what ``make lab`` runs).

    python scripts/lab.py [extra jupyter-lab arguments]

The server's root is the repository, so the file browser reaches ``notebooks/``, ``exercises/``
and ``solutions/`` alike (a student edits and grades an exercise without leaving JupyterLab); it
opens on the ``notebooks/`` folder. The kernel "KD course (.venv)" is registered first.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KERNEL_NAME, KERNEL_DISPLAY = "kd-course", "KD course (.venv)"


def lab_arguments(root: Path = REPO_ROOT, extra: list[str] | None = None) -> list[str]:
    """``jupyter lab`` arguments: serve ``root``, open its notebooks folder."""
    args = [f"--ServerApp.root_dir={root}", "--LabApp.default_url=/lab/tree/notebooks"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")        # jupyter refuses root without it (containers, CI-like machines)
    return args + list(extra or [])


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else argv
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME,
                    "--display-name", KERNEL_DISPLAY], check=True, stdout=subprocess.DEVNULL)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}   # inline plots in the lab
    return subprocess.call([sys.executable, "-m", "jupyter", "lab", *lab_arguments(REPO_ROOT, extra)], env=env)


if __name__ == "__main__":
    raise SystemExit(main())
