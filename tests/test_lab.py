"""``make lab`` serves the repository: a student reaches exercises/ from the course's JupyterLab."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import lab  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_lab_arguments_serve_the_repository_and_open_notebooks():
    args = lab.lab_arguments(REPO)
    assert f"--ServerApp.root_dir={REPO}" in args and "--LabApp.default_url=/lab/tree/notebooks" in args


@pytest.mark.slow
def test_exercises_are_reachable_through_the_contents_api(tmp_path):
    token = "kd-course-test"
    env_home = {"JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
                "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    for attempt in range(3):        # a port found free can be taken before the server binds it: try another
        port = _free_port()
        extra = ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                 f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0"]
        proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", *lab.lab_arguments(REPO, extra)],
                                env={**os.environ, **env_home}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}/api/contents"
        deadline, root = time.monotonic() + 240, None
        while root is None:
            try:
                root = _get(f"{base}?token={token}")
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        if root is not None:
            break
        err = proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "(still starting)"
        proc.kill()
        if "already in use" not in err or attempt == 2:
            raise AssertionError(f"jupyter lab did not start: {err}")
    try:
        names = {item["name"] for item in root["content"]}
        assert {"notebooks", "exercises", "solutions"} <= names
        listing = {item["name"] for item in _get(f"{base}/exercises?token={token}")["content"]}
        assert "ex01_dark_knowledge.py" in listing
        exercise = _get(f"{base}/exercises/ex01_dark_knowledge.py?token={token}&content=1")
        assert "def softmax_with_temperature" in exercise["content"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
