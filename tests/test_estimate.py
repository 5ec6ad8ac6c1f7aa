"""The full profile's GPU estimates (``course_lib.estimate``, ``llm.estimate``, ``encoder.estimate``):
the FLOP counter against hand counts, the time model against its formula, every notebook's full
profile within the budget it is sized for, and the README's table equal to what the code computes."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib import estimate
from course_lib.encoder import estimate as encoder_estimate
from course_lib.llm import estimate as llm_estimate
from course_lib.profiles import get_profile

README = Path(__file__).resolve().parents[1] / "README.md"
IMAGE_NOTEBOOKS = ("01", "02", "03", "04", "05", "07")


def full_minutes() -> dict[str, float]:
    full = get_profile("full")
    out = {nb: estimate.minutes(estimate.vision_work(full, nb)) for nb in IMAGE_NOTEBOOKS}
    out["06"] = estimate.minutes(llm_estimate.work(full.llm, full.speculative))
    e = full.encoder
    out["08"] = estimate.minutes(encoder_estimate.work(e, e.train_reviews, test_size=encoder_estimate.SST2_VALIDATION,
                                                       teacher_layers=12, hidden=768, intermediate=3072))
    return out


def test_forward_flops_counts_multiply_adds_twice():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    assert estimate.forward_flops(model, (10,)) == 2 * (10 * 20 + 20 * 3)
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert estimate.forward_flops(conv, (3, 16, 16)) == 2 * 8 * 16 * 16 * 3 * 9
    model.train()
    estimate.forward_flops(model, (10,))
    assert model.training                                 # the mode is restored
    with pytest.raises(ValueError, match="positive"):
        estimate.forward_flops(model, (0,))


def test_the_time_is_flops_at_the_assumed_rate_plus_steps_plus_decoding():
    w = estimate.Work("x", forward_flops=1e9, examples=1000, epochs=2, runs=3, steps=50)
    assert w.flops == 3 * 1e9 * 1000 * 2 * 3
    rate = estimate.GPUS["T4"]["fp32_tflops"] * 1e12 * estimate.ASSUMED_UTILISATION
    assert estimate.seconds([w]) == pytest.approx(w.flops / rate + 50 * estimate.STEP_SECONDS)
    big = estimate.Work("decode", decode_steps=10, weight_bytes=4e9)     # 4 GB streamed per step
    stream = 4e9 / (320e9 * estimate.BANDWIDTH_UTILISATION)
    assert stream > estimate.DECODE_STEP_FLOOR_SECONDS
    assert estimate.seconds([big]) == pytest.approx(10 * stream)
    small = estimate.Work("decode", decode_steps=10, weight_bytes=1e6)   # launch-bound: the floor
    assert estimate.seconds([small]) == pytest.approx(10 * estimate.DECODE_STEP_FLOOR_SECONDS)
    assert estimate.seconds([w], "A100") < estimate.seconds([w], "T4")
    with pytest.raises(ValueError, match="unknown GPU"):
        estimate.seconds([w], "H100")
    with pytest.raises(ValueError, match="utilisation"):
        estimate.seconds([w], utilisation=0)


def test_the_plans_follow_the_settings():
    full = get_profile("full")
    base = estimate.minutes(estimate.vision_work(full, "02"))
    longer = estimate.minutes(estimate.vision_work(full.replace_vision(student_epochs=200), "02"))
    assert longer > base
    # 05: the born-again architecture (BatchNorm: one run at a time) decides the steps
    work = estimate.vision_work(full, "05")
    per_epoch = math.ceil(full.vision.student_train_size / full.vision.batch_size)
    runs = len(full.vision.seeds) * (2 + full.vision.ban_generations - 1)
    assert work[2].steps == per_epoch * full.vision.ban_epochs * runs
    # stackable students train in stacks of six: 14 runs -> 3 stacks
    main = estimate.vision_work(full, "02")[2]
    assert main.runs == 3 * len(full.vision.seeds) + len(full.vision.ablation_temperatures) + len(
        full.vision.ablation_alphas)
    assert main.steps == math.ceil(full.vision.student_train_size / 128) * full.vision.student_epochs * math.ceil(
        main.runs / 6)
    with pytest.raises(ValueError, match="no image notebook"):
        estimate.vision_work(full, "06")


def test_the_llm_count_follows_the_models():
    # SmolLM2-135M: 30 layers of 3.54M matmul parameters; with its 28.3M-row-parameter output layer, 134.5M
    c = llm_estimate.CONFIGS[None]
    per_layer = llm_estimate.layer_parameters(c["hidden"], c["intermediate"], c["heads"], c["kv_heads"])
    assert per_layer * c["layers"] + c["hidden"] * c["vocab"] == pytest.approx(134.5e6, rel=0.01)
    c = llm_estimate.CONFIGS["HuggingFaceTB/SmolLM2-360M-Instruct"]
    assert llm_estimate.layer_parameters(c["hidden"], c["intermediate"], c["heads"], c["kv_heads"]) == 9_830_400
    full = get_profile("full")
    with_part_2 = estimate.minutes(llm_estimate.work(full.llm, full.speculative))
    assert with_part_2 > estimate.minutes(llm_estimate.work(full.llm))
    with pytest.raises(ValueError, match="no configuration"):
        import dataclasses
        llm_estimate.work(dataclasses.replace(full.llm, teacher_model="someone/else"))


def test_every_notebooks_full_profile_fits_a_colab_session():
    minutes = full_minutes()
    assert sorted(minutes) == ["01", "02", "03", "04", "05", "06", "07", "08"]
    assert all(0 < m <= estimate.FULL_BUDGET_MINUTES for m in minutes.values()), minutes


def test_the_readme_table_is_what_the_code_computes():
    text = README.read_text(encoding="utf-8")
    for nb, m in full_minutes().items():
        row = re.search(rf"^\| {nb} \| [^\n]*\| about (\d+) min \|$", text, re.M)
        assert row, f"no row for notebook {nb} in the README's full-profile table"
        assert int(row.group(1)) == math.ceil(m), (nb, row.group(1), m)


def test_every_notebook_prints_its_estimate():
    src = Path(__file__).resolve().parents[1] / "notebooks" / "src"
    for path in sorted(src.glob("0*.py")):
        text = path.read_text(encoding="utf-8")
        assert "full_profile_summary(" in text, path.name
    line = estimate.full_profile_summary("01")
    assert line.startswith("full profile on a Colab T4: about ") and "not measured" in line
    assert "still" in llm_estimate.full_profile_summary() and "still" in encoder_estimate.full_profile_summary()


def test_the_quick_dataset_is_counted_too():
    # the counting is not tied to CIFAR: notebook 02's quick profile on Fashion-MNIST (28 x 28, 10 classes)
    work = estimate.vision_work(get_profile("quick"), "02")
    assert sum(w.flops for w in work) > 0
    assert torch.Size(estimate.DATASETS["fashion_mnist"]["shape"]) == (1, 28, 28)
