"""scripts/gpu_check.py, the GPU smoke check, on this CPU: a notebook's code runs as one plain script,
its time and outcome land in the JSON file, and a failed claim is reported as a failure."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import gpu_check  # noqa: E402


def test_a_notebook_is_its_code_cells_in_order_with_the_home_filled_in():
    script = gpu_check.notebook_script(REPO / "notebooks" / "src" / "01_dark_knowledge.py")
    assert "{{COURSE_" not in script and script.index("# --- cell") < script.index("get_profile()")
    assert "# ## Exercises" not in script                                  # markdown is left out
    compile(script, "01", "exec")


def test_a_failed_claim_is_a_failure_with_its_message(tmp_path):
    source = tmp_path / "99_fails.py"
    source.write_text("# %% code\nx = 1\n\n# %% code\nassert x == 2, 'the distilled student did not win'\n")
    row = gpu_check.run_notebook(source, timeout=120, workdir=tmp_path)
    assert not row["ok"] and row["returncode"] == 1 and "the distilled student did not win" in row["tail"]


def test_a_run_is_recorded_per_notebook(tmp_path):
    """Two small notebook sources (the course's own take minutes: their conversion is checked above)."""
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "01_fine.py").write_text("# %% md slide\n# # A title\n\n# %% code\nimport torch\n"
                                        "print(torch.ones(2).sum().item())\n")
    (sources / "02_claim.py").write_text("# %% code\nassert 1 + 1 == 3, 'the claim failed'\n")
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--allow-cpu", "--sources", str(sources), "--out", str(out)]) == 1      # one failed
    report = json.loads(out.read_text())
    rows = {r["notebook"]: r for r in report["notebooks"]}
    assert rows["01_fine"]["ok"] and rows["01_fine"]["seconds"] > 0 and not rows["02_claim"]["ok"]
    assert "the claim failed" in rows["02_claim"]["tail"] and not report["all_ok"] and report["machine"]["torch"]
    assert gpu_check.main(["--allow-cpu", "--sources", str(sources), "--only", "01", "--out", str(out)]) == 0


def test_no_cuda_is_refused_unless_allowed(tmp_path, capsys):
    if gpu_check.machine()["cuda"] is None:
        assert gpu_check.main(["--only", "01", "--out", str(tmp_path / "x.json")]) == 2
        assert "no CUDA" in capsys.readouterr().err
    assert gpu_check.main(["--only", "77", "--allow-cpu", "--out", str(tmp_path / "x.json")]) == 2
