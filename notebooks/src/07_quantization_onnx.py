# %% md slide
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/kd-course/kd-course/blob/main/notebooks/07_quantization_onnx.ipynb)
#
# # 07 · From distilled student to deployment: int8, ONNX and ONNX Runtime, measured
#
# **Learning goals**
# - measure what a deployment claim rests on: bytes on disk, latency (median and spread, batch size
#   and threads stated) and accuracy on the real test set - for every variant, the teacher included;
# - quantize a CNN to int8 after training (static: fuse, calibrate, convert) and know what dynamic
#   quantization does and does not touch;
# - export to ONNX with a dynamic batch axis, check parity with torch, and run it in ONNX Runtime;
# - tell which of distillation, int8 and the runtime buys which part of the gain.

# %% code skip
# Setup, only on Colab (locally, `make setup` has done it): clone the course, install course_lib from
# the clone (with the ONNX packages of the "llm" extra), and point COURSE_HOME at it, so exercises/
# and the grade cell work as in a checkout.
import importlib.util
import os
import subprocess
import sys
if importlib.util.find_spec("google.colab") is not None:
    COURSE_HOME = "/content/kd-course"
    if not os.path.isdir(COURSE_HOME):
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/kd-course/kd-course.git",
                        COURSE_HOME], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"{COURSE_HOME}[llm]"], check=True)
    os.environ["COURSE_HOME"] = COURSE_HOME
    os.environ.setdefault("COURSE_ALLOW_DOWNLOAD", "1")   # torchvision downloads the data on Colab

# %% code subslide
import torch
import matplotlib.pyplot as plt
from course_lib.profiles import configure_threads, environment_report, get_device, get_profile

configure_threads()
profile = get_profile()            # "quick" unless COURSE_PROFILE=full
device = get_device()
print(environment_report(profile, device))

# %% md slide
# ## The claim, and how it is usually (not) checked
#
# Distillation articles often end with "10-100x smaller with 5-15% accuracy loss". The source article
# gets there by calling `quantize_dynamic` on an **untrained** MobileNetV3, estimating the int8 size
# as "fp32 size / 4", and never timing anything or measuring accuracy.
#
# Here every figure is measured on the models this course distilled:
#
# | what | how |
# |---|---|
# | size | serialise (`torch.save` of the state dict, or the `.onnx` file **plus** its external data), count bytes |
# | latency | warm-up, then 50 timed calls: median (and p10/p90), at batch 1 and 64, **1 thread** |
# | accuracy | top-1 on the full test set, the same function for torch and ONNX Runtime |

# %% md slide
# ## The models: notebook 02's teacher and its distilled student
#
# The teacher is the course's trained CNN (cached by `make setup`). The student is notebook 02's
# distilled `StudentCNN` - the same recipe (its training subset, $T = 4$, $\alpha = 0.9$, the
# profile's epochs), trained again here on seed 0, since notebooks do not share state.

# %% code subslide
from course_lib.data import profile_data
from course_lib.engine import Execution, RunSpec, TrainConfig, cache_logits, fit
from course_lib.models import build_model
from course_lib.teachers import pretrained_teacher

train, test = profile_data(profile)
teacher, _ = pretrained_teacher(profile, train, test)
student_train = train.subset(profile.vision.student_train_size, seed=0)
[run] = fit(lambda: build_model("student_cnn", train), [RunSpec("kd", 0, 4.0, 0.9)], student_train,
            TrainConfig.from_profile(profile, eval_every=0), teacher_logits=cache_logits(teacher, student_train),
            test=test, execution=Execution(device=device), desc="distilled student")
teacher, student = teacher.cpu().eval(), run.model.cpu().eval()     # deployment here: CPU
print(f"distilled student: {run.test_accuracy:.2f}% test accuracy after {run.seconds:.0f} s of training")

# %% md slide
# ## Size, honestly: serialise and count
#
# "Parameters x 4 bytes" forgets the buffers (batch-norm statistics), the container's overhead and,
# for int8, the scales and zero points. `size_on_disk` writes the model and counts the bytes.

# %% code subslide
from course_lib import compress

for name, model in [("teacher", teacher), ("student", student)]:
    params = compress.torch_parameters(model)
    print(f"{name:<8} {params:>9,} parameters x 4 bytes = {4 * params:>9,} B; "
          f"torch.save: {compress.size_on_disk(model):>9,} B")

# %% md slide
# ## Dynamic int8 on a CNN touches only the Linear layers
#
# `quantize_dynamic` stores `nn.Linear` (and LSTM) weights in int8 and quantizes activations on the
# fly. It has no convolution kernels: on a CNN it replaces the classifier and nothing else - which is
# all the source article's MobileNetV3 example ever quantized.

# %% code subslide
for name, model in [("teacher", teacher), ("student", student)]:
    q, replaced = compress.quantize_dynamic_int8(model)
    linear = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters())
    total = compress.torch_parameters(model)
    print(f"{name}: replaced {replaced} - {linear:,} of {total:,} parameters ({100 * linear / total:.0f}%) "
          f"are in Linear layers; bytes {compress.size_on_disk(model):,} -> {compress.size_on_disk(q):,}")
student_dynamic = compress.quantize_dynamic_int8(student)[0]

# %% md slide
# ## Static int8: fuse, calibrate, convert
#
# Post-training static quantization (`course_lib.compress.quantize_static_int8`, eager
# `torch.ao.quantization`):
# 1. **fuse** conv + batch norm + ReLU (and linear + ReLU) into one op: batch norm is folded into the
#    convolution's weights, and nothing is rounded between the three;
# 2. **calibrate**: run a few hundred training images through observers that record each activation's
#    range (a histogram, clipped where it minimises the rounding error);
# 3. **convert**: int8 weights (one scale per output channel), uint8 activations with the calibrated
#    scales, int8 kernels.
#
# Why this API: torch 2.14's `torch.ao.quantization` still works and warns that it is deprecated in
# favour of **torchao**. torchao is left out on purpose: once installed, `import transformers` imports
# it and prints warnings in every later notebook. The conversion's own deprecation warning (quantized
# tensor dtypes) is left visible below: it is true.

# %% code subslide
calibration = train.subset(300, seed=1)          # a few hundred training images, never test images
student_int8 = compress.quantize_static_int8(student, calibration)
teacher_int8 = compress.quantize_static_int8(teacher, calibration)
print(student_int8)
for name, fp32, int8 in [("student", student, student_int8), ("teacher", teacher, teacher_int8)]:
    estimate, measured = compress.size_on_disk(fp32) // 4, compress.size_on_disk(int8)
    print(f"{name} int8: 'fp32 size / 4' estimate {estimate:,} B, measured {measured:,} B "
          f"({measured / estimate:.2f}x the estimate)")

# %% md slide
# ## ONNX export, parity, ONNX Runtime
#
# `torch.onnx.export` now uses the **dynamo** exporter (it needs `onnxscript`). `export_onnx` gives the
# graph a dynamic batch axis and keeps the weights inside the `.onnx` file; the exporter's own default
# writes them to a separate `.onnx.data` file - which a size measured from the `.onnx` alone misses.
#
# Parity is a **relative** error (max |difference| / max |torch logit|) plus top-1 agreement: an
# absolute tolerance means nothing when logits are tiny or huge.

# %% code subslide
from course_lib.paths import build_dir

onnx_dir = build_dir() / "07_onnx"
student_onnx = compress.export_onnx(student, test.x[:1], onnx_dir / "student.onnx")
split = compress.export_onnx(student, test.x[:1], onnx_dir / "student_split.onnx", external_data=True)
print(f"weights inside:  {student_onnx.name} {student_onnx.stat().st_size:,} B")
print(f"external data:   {split.name} {split.stat().st_size:,} B + {split.name}.data "
      f"{(onnx_dir / (split.name + '.data')).stat().st_size:,} B; size_on_disk counts both: "
      f"{compress.size_on_disk(split):,} B")
session = compress.ort_session(student_onnx, threads=1)
for b in (1, 64):
    print(f"batch {b:>2}: output {tuple(compress.ort_logits(session, test.x[:b]).shape)}")
print("parity with torch on the test set:", compress.onnx_parity(student, session, test.x))

# %% md slide
# ## int8 in ONNX Runtime: static QDQ
#
# ONNX Runtime quantizes the exported graph: quantize/dequantize pairs around each op, ranges calibrated
# on the same training images; its optimiser then runs int8 kernels between them. For CNNs use static
# quantization: ORT's *dynamic* int8 convolutions made a CNN ~15x slower on this machine, so
# `ort_quantize_dynamic` only touches MatMul/Gemm (transformers, MLPs). Weights are kept to 7 bits on
# x86 CPUs without VNNI, where full 8-bit weights overflow ORT's kernels (5.5 points lost in a test).

# %% code subslide
student_onnx_int8 = compress.ort_quantize_static(student_onnx, onnx_dir / "student_int8.onnx", calibration)
session_int8 = compress.ort_session(student_onnx_int8, threads=1)
print("int8 ONNX vs torch fp32:", compress.onnx_parity(student, session_int8, test.x))

# %% md slide
# ## The comparison: every variant, measured the same way

# %% code skip
# measure every variant (the deck shows the table and the plots)
variants = [
    compress.Variant("teacher fp32 (torch)", teacher),
    compress.Variant("teacher int8 static (torch)", teacher_int8),
    compress.Variant("student fp32 (torch)", student),
    compress.Variant("student int8 dynamic (torch)", student_dynamic),
    compress.Variant("student int8 static (torch)", student_int8),
    compress.Variant("student fp32 (ONNX Runtime)", session, student_onnx),
    compress.Variant("student int8 QDQ (ONNX Runtime)", session_int8, student_onnx_int8),
]
rows = compress.comparison_table(variants, test, batch_sizes=(1, 64), threads=1)
by_name = {r["name"]: r for r in rows}
teacher_row = by_name["teacher fp32 (torch)"]

# %% code subslide
print("| variant | bytes | params | batch 1 (ms) | batch 64 (ms) | accuracy (%) | smaller | faster at 1 |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['name']} | {r['bytes']:,} | {r['parameters']:,} | {r['latency_b1_ms']:.3f} | "
          f"{r['latency_b64_ms']:.2f} | {r['accuracy']:.2f} | {teacher_row['bytes'] / r['bytes']:.1f}x | "
          f"{teacher_row['latency_b1_ms'] / r['latency_b1_ms']:.1f}x |")
print("latency: median of 50 calls after 10 warm-up calls, 1 thread; ratios against the fp32 teacher in torch")

# %% code subslide tags=hide-input
import numpy as np

names = [r["name"] for r in rows]
colors = ["tab:red" if n.startswith("teacher") else "tab:blue" if "(torch)" in n else "tab:green" for n in names]
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
for ax, key, label in [(axes[0], "bytes", "bytes on disk"), (axes[1], "latency_b1_ms", "latency, batch 1 (ms)"),
                       (axes[2], "latency_b64_ms", "latency, batch 64 (ms)")]:
    values = [r[key] for r in rows]
    ax.barh(names, values, color=colors, alpha=0.8)
    ax.set(xscale="log", xlabel=f"{label}, log scale")
    for i, (value, r) in enumerate(zip(values, rows)):
        ax.text(value, i, f" {r['accuracy']:.1f}%" if key == "bytes" else f" {value:.3g}", va="center", fontsize=8)
axes[0].invert_yaxis()
axes[0].set_title("size (accuracy annotated)")
axes[1].set_title("one image")
axes[2].set_title("a batch of 64")
plt.tight_layout()
plt.show()

# %% code subslide tags=hide-input
fig, ax = plt.subplots(figsize=(8.5, 4.8))
area = np.array([r["bytes"] for r in rows], dtype=float)
ax.scatter([r["latency_b1_ms"] for r in rows], [r["accuracy"] for r in rows], s=1500 * area / area.max() + 20,
           c=colors, alpha=0.6, edgecolors="k")
for r in rows:
    ax.annotate(r["name"], (r["latency_b1_ms"], r["accuracy"]), fontsize=8, xytext=(6, 4),
                textcoords="offset points")
ax.set(xscale="log", xlabel="latency at batch 1 (ms, log scale, 1 thread)", ylabel="test accuracy (%)",
       title="Accuracy against latency; marker area = bytes on disk")
plt.tight_layout()
plt.show()

# %% code skip
# The claims. Size and accuracy are asserted with margins that are profile settings; latency is a
# wall-clock figure of this machine at this moment: printed and recorded, never asserted.
students = [r for r in rows if r["name"].startswith("student")]
deployed = min(students, key=lambda r: r["latency_b1_ms"])         # the fastest student variant, as measured
sources = {"teacher int8 static (torch)": "teacher fp32 (torch)",
           "student int8 dynamic (torch)": "student fp32 (torch)",
           "student int8 static (torch)": "student fp32 (torch)",
           "student int8 QDQ (ONNX Runtime)": "student fp32 (ONNX Runtime)"}
int8_change = {n: by_name[n]["accuracy"] - by_name[s]["accuracy"] for n, s in sources.items()}
same_runtime_speedup = {n: {b: by_name[s][f"latency_b{b}_ms"] / by_name[n][f"latency_b{b}_ms"] for b in (1, 64)}
                        for n, s in sources.items()}
margin = profile.claim("07.deployed_smaller_min")
if margin is not None:
    assert teacher_row["bytes"] / deployed["bytes"] >= margin, deployed
margin = profile.claim("07.deployed_within_teacher_points")
if margin is not None:
    assert teacher_row["accuracy"] - deployed["accuracy"] <= margin, deployed
margin = profile.claim("07.int8_within_points")
if margin is not None:
    assert all(abs(d) <= margin for d in int8_change.values()), int8_change

# %% code subslide
print(f"deployed (fastest student variant at batch 1): {deployed['name']}")
print(f"  {teacher_row['latency_b1_ms'] / deployed['latency_b1_ms']:.0f}x faster than the fp32 teacher in torch at "
      f"batch 1, {teacher_row['latency_b64_ms'] / deployed['latency_b64_ms']:.0f}x at batch 64, "
      f"{teacher_row['bytes'] / deployed['bytes']:.0f}x smaller, "
      f"{deployed['accuracy'] - teacher_row['accuracy']:+.2f} points of accuracy")
print("int8 against its fp32 source on the same runtime (accuracy change; speed-up at batch 1 / 64):")
for n in sources:
    print(f"  {n:<33} {int8_change[n]:+.2f} points; {same_runtime_speedup[n][1]:.2f}x / "
          f"{same_runtime_speedup[n][64]:.2f}x")

# %% md slide
# ## Reading the results
#
# - **Distillation** buys the accuracy of a much smaller model (the parameter counts above); everything
#   after it is engineering.
# - **The runtime**: for a network this small, torch's per-call overhead dominates at batch 1, and
#   ONNX Runtime removes most of it - compare the two fp32 students.
# - **int8 pays where the arithmetic dominates**: the teacher's wide convolutions at batch 64, in the
#   same runtime. On the tiny student int8 adds quantize/dequantize steps to little arithmetic, and
#   dynamic int8 only touches its classifier: read the speed-ups above before quoting one.
# - Size always shrinks about 4x with int8 weights, less the scales, zero points and container.
# - Latency depends on the machine, its load and the thread count: the figures above are this run's.

# %% md slide
# ## Common mistakes
#
# - **Estimating instead of measuring**: "fp32 size / 4", or a speed-up assumed from the bit width.
# - **Quantizing an untrained model** (the source article): accuracy after int8 means nothing then.
# - **`quantize_dynamic` on a CNN** and calling it "quantized": only the Linear layers changed.
# - **Calibrating on test images**, or on too few: calibration data is training data.
# - **Exporting in training mode** (dropout and batch norm differ); `export_onnx` refuses.
# - **Counting only `model.onnx`** when the weights went to `model.onnx.data`.
# - **Timing without a warm-up, at one batch size, with unstated threads**, or one run instead of a median.
# - **Parity by absolute tolerance** alone: use a relative error and top-1 agreement.

# %% md skip
# ## Results recorded

# %% code skip
from course_lib.results import record_many
r3 = lambda x: round(float(x), 3)
figures = {
    "setting": {"threads": 1, "repeats": 50, "warmup": 10, "calibration_images": len(calibration),
                "student": "student_cnn, kd T=4 alpha=0.9, seed 0", "epochs": profile.vision.student_epochs},
    "variants": {r["name"]: {"bytes": r["bytes"], "parameters": r["parameters"],
                             "latency_b1_ms": r3(r["latency_b1_ms"]), "latency_b64_ms": r3(r["latency_b64_ms"]),
                             "accuracy": round(r["accuracy"], 2)} for r in rows},
    "deployed": {"name": deployed["name"],
                 "faster_than_teacher_b1": round(teacher_row["latency_b1_ms"] / deployed["latency_b1_ms"], 1),
                 "smaller_than_teacher": round(teacher_row["bytes"] / deployed["bytes"], 1),
                 "accuracy_minus_teacher": round(deployed["accuracy"] - teacher_row["accuracy"], 2)},
    "int8_accuracy_change": {n: round(d, 2) for n, d in int8_change.items()},
    "int8_speedup_same_runtime": {n: {f"b{b}": round(x, 2) for b, x in speedups.items()}
                                  for n, speedups in same_runtime_speedup.items()},
    "headline": ["deployed.faster_than_teacher_b1", "deployed.smaller_than_teacher", "deployed.accuracy_minus_teacher"],
}
record_many("07_quantization_onnx", figures)

# %% md slide
# ## Exercises (graded)
#
# Open `exercises/ex07_quantization.py` and implement what its docstrings describe: int8 quantization
# parameters from a tensor's range, quantize-dequantize, a model's size on disk, and a parity check.
# Grade with the cell below or `python -m course_lib.grading exercises --only ex07`.
# `course_lib.compress` is printed *after* this exercise: try first, then compare.

# %% code skip
from course_lib.grading import self_check
self_check("ex07")      # grades exercises/ (the checkout's, or on Colab the clone's) in an isolated process

# %% md slide
# ## Summary and further reading
#
# - A deployment claim is three measurements - bytes, latency (batch, threads, spread) and accuracy - of
#   every variant, on the same test set, against the same reference.
# - Static int8 needs fusion and calibration; dynamic int8 is for Linear-heavy models; ONNX Runtime
#   removes framework overhead and brings its own int8 kernels.
# - Distillation, the runtime and int8 each buy a different part of the gain: measure which.
#
# Reading: B. Jacob et al., *Quantization and Training of Neural Networks for Efficient
# Integer-Arithmetic-Only Inference*, CVPR 2018; R. Krishnamoorthi, *Quantizing deep convolutional
# networks for efficient inference: A whitepaper*, 2018; the PyTorch quantization and ONNX Runtime
# quantization documentation.

# %% md slide
# ## The reference implementation (after the exercise)

# %% code skip
import inspect
print(inspect.getsource(compress.quantize_static_int8))
print(inspect.getsource(compress.onnx_parity))
print(inspect.getsource(compress.size_on_disk))
