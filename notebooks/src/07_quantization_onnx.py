# %% md slide
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{{COURSE_REPOSITORY}}/blob/{{COURSE_BRANCH}}/notebooks/07_quantization_onnx.ipynb)
#
# # 07 · From distilled student to deployment: int8, ONNX and ONNX Runtime, measured
#
# **Learning goals**
# - measure what a deployment claim rests on: bytes on disk, latency (median and spread, batch size
#   and threads stated) and accuracy on the real test set - for every variant, the teacher included;
# - quantize a CNN to int8 after training (static: fuse, calibrate, convert) and know what dynamic
#   quantization does and does not touch;
# - export to ONNX with a dynamic batch axis, check parity with torch, and run it in ONNX Runtime;
# - tell which of distillation, int8 and the runtime buys which part of the gain - distillation's part
#   against the same student trained without a teacher, with a paired test.

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
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{{COURSE_BRANCH}}",
                        "https://github.com/{{COURSE_REPOSITORY}}.git",
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

# %% code skip
# how long the full profile (COURSE_PROFILE=full) should take on a free Colab GPU
from course_lib.estimate import full_profile_summary
print(full_profile_summary("07"))

# %% md slide
# ## The claim, and how it is usually (not) checked
#
# Distillation write-ups often end with "10-100x smaller with 5-15% accuracy loss". The source article
# calls `quantize_dynamic` on a MobileNetV3 - which touches only its Linear layers - and estimates the
# int8 size as "size / 4" instead of measuring it.
#
# Here every figure is measured on the models this course distilled:
#
# | what | how |
# |---|---|
# | size | serialise (`torch.save` of the state dict, or the `.onnx` file **plus** its external data), count bytes |
# | latency | warm-up, then 50 timed calls: median, p10 and p90, at batch 1 and 64, **1 thread** |
# | accuracy | top-1 on the full test set, the same function for torch and ONNX Runtime |

# %% md slide
# ## The models: notebook 02's teacher and its distilled student
#
# The teacher is the course's trained CNN (cached by `make setup`). The student is notebook 02's
# distilled `StudentCNN` - the same recipe (its training subset, $T = 4$, $\alpha = 0.9$, the
# profile's epochs), trained again here on seed 0, since notebooks do not share state. Beside it, the
# **control**: the same student, same seed, trained on the labels alone (notebook 02's "alone"),
# stacked with it in one training loop (one pass over the data trains both).

# %% code subslide
from course_lib.data import profile_data
from course_lib.engine import Execution, RunSpec, TrainConfig, cache_logits, fit
from course_lib.models import build_model
from course_lib.teachers import pretrained_teacher

train, test = profile_data(profile)
teacher, _ = pretrained_teacher(profile, train, test)
student_train = train.subset(profile.vision.student_train_size, seed=0)
run, alone_run = fit(lambda: build_model("student_cnn", train), [RunSpec("kd", 0, 4.0, 0.9), RunSpec("alone", 0)],
                     student_train, TrainConfig.from_profile(profile, eval_every=0),
                     teacher_logits=cache_logits(teacher, student_train), test=test,
                     execution=Execution(device=device), desc="distilled student and its control")
teacher, student, alone = teacher.cpu().eval(), run.model.cpu().eval(), alone_run.model.cpu().eval()  # CPU
print(f"distilled student: {run.test_accuracy:.2f}% test accuracy; the same student on labels alone: "
      f"{alone_run.test_accuracy:.2f}% ({run.seconds:.0f} s of training, both together)")

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
# `quantize_dynamic` stores weights in int8 and quantizes activations on the fly. Its default
# `qconfig_spec` for int8 maps `nn.Linear`, `nn.LSTM`, `nn.GRU` and the RNN/LSTM/GRU cells, so
# **convolutions stay fp32 unless asked for**: `torch.ao.nn.quantized.dynamic` does have `Conv1d/2d/3d`
# modules, but neither the default spec nor the default module mapping names them (torch warns that
# its dynamic `Conv2d` "has poor numerical accuracy and its use is not recommended"). On a CNN the
# default replaces the classifier and nothing else - all the source article's `quantize_dynamic` call
# on MobileNetV3 quantizes. (`compress.quantize_dynamic_int8` asks for `nn.Linear` and says what it
# replaced.)

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
teacher_dynamic = compress.quantize_dynamic_int8(teacher)[0]
sizes = {name: {form: compress.size_on_disk(m) for form, m in forms.items()}
         for name, forms in [("student", {"fp32": student, "dynamic": student_dynamic, "static": student_int8}),
                             ("teacher", {"fp32": teacher, "dynamic": teacher_dynamic, "static": teacher_int8})]}
for name, size in sizes.items():
    print(f"{name}: fp32 {size['fp32']:,} B -> dynamic int8 {size['dynamic']:,} B "
          f"({size['fp32'] / size['dynamic']:.1f}x smaller), static int8 {size['static']:,} B "
          f"({size['fp32'] / size['static']:.1f}x smaller; 'size / 4' would say 4.0x)")

# %% md slide
# ## Why not 4x: where the bytes go
#
# `compress.size_breakdown` splits a saved model into the int8 values (1 byte per weight), the
# quantization parameters (a float64 scale and an int64 zero point per output channel, and per layer
# for its output), what stays unquantized (biases, layers left fp32) and the container (the pickled
# structure, one zip record per tensor, alignment padding).

# %% code subslide
parts = {name: {form: compress.size_breakdown(m) for form, m in forms.items()}
         for name, forms in [("student", {"fp32": student, "dynamic": student_dynamic, "static": student_int8}),
                             ("teacher", {"fp32": teacher, "dynamic": teacher_dynamic, "static": teacher_int8})]}
print(f"{'bytes':<19}" + "".join(f"{n + ' ' + f:>17}" for n in parts for f in parts[n]))
for key in ("int8", "qparams", "unquantized", "container"):
    print(f"{key:<19}" + "".join(f"{parts[n][f][key]:>17,}" for n in parts for f in parts[n]))
for name, p in parts.items():
    fp32, static, dynamic = p["fp32"], p["static"], p["dynamic"]
    payload = static["int8"] + static["qparams"] + static["unquantized"]
    print(f"{name}: static int8's tensors alone are {fp32['unquantized'] / payload:.2f}x smaller than fp32's; "
          f"its container is {static['container']:,} B against fp32's {fp32['container']:,} "
          f"({100 * static['container'] / sizes[name]['static']:.0f}% of the file) -> "
          f"{sizes[name]['fp32'] / sizes[name]['static']:.2f}x in all; dynamic int8 leaves "
          f"{dynamic['unquantized']:,} B in fp32 ({100 * dynamic['unquantized'] / sizes[name]['dynamic']:.0f}% "
          f"of its file: everything but the Linear layers)")

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
# on the same training images; its optimiser then runs int8 kernels between them. Two defaults of
# `course_lib.compress`, each measured against its alternative on the next slide:
# - **static for CNNs**: `ort_quantize_dynamic` touches only MatMul/Gemm (transformers, MLPs) unless
#   told otherwise; dynamic int8 convolutions become `ConvInteger` ops;
# - **7-bit weights** (`reduce_range=True`): ORT's documentation recommends it for x86 CPUs without
#   VNNI, "to reduce the risk of integer saturation", and calls it often unnecessary with VNNI.

# %% code subslide
student_onnx_int8 = compress.ort_quantize_static(student_onnx, onnx_dir / "student_int8.onnx", calibration)
session_int8 = compress.ort_session(student_onnx_int8, threads=1)
print("int8 ONNX vs torch fp32:", compress.onnx_parity(student, session_int8, test.x))

# %% code subslide
# the two alternatives, measured here: dynamic int8 convolutions, and full 8-bit weights
import os

from course_lib.analysis import mcnemar_test

dynamic_conv = compress.ort_quantize_dynamic(student_onnx, onnx_dir / "student_dynamic_conv.onnx",
                                             op_types=("Conv", "MatMul", "Gemm"))
full_range = compress.ort_quantize_static(student_onnx, onnx_dir / "student_int8_8bit.onnx", calibration,
                                          reduce_range=False)
ort_runs = {"fp32": session, "static QDQ, 7-bit weights": session_int8,
            "dynamic, convolutions too": compress.ort_session(dynamic_conv, threads=1),
            "static QDQ, 8-bit weights": compress.ort_session(full_range, threads=1)}
right = {k: compress.logits_of(s, test.x).argmax(-1) == test.y for k, s in ort_runs.items()}
b64 = {k: compress.measure_latency(s, test.x[:64], threads=1) for k, s in ort_runs.items()}

# %% code subslide
for k in ort_runs:
    print(f"{k:<26} {100 * right[k].float().mean():6.2f}%   batch 64: {b64[k].median_ms:.3f} ms "
          f"(p10-p90 {b64[k].p10_ms:.3f}-{b64[k].p90_ms:.3f})")
fp, conv = b64["fp32"], b64["dynamic, convolutions too"]
conv_verdict = ("slower" if conv.p10_ms > fp.p90_ms else "faster" if conv.p90_ms < fp.p10_ms
                else "no clear difference")
print(f"\ndynamic int8 convolutions: {conv.median_ms / fp.median_ms:.1f}x the fp32 median ({conv_verdict}: "
      f"p10-p90 {conv.p10_ms:.3f}-{conv.p90_ms:.3f} against {fp.p10_ms:.3f}-{fp.p90_ms:.3f} ms)")
test8 = mcnemar_test(right["static QDQ, 8-bit weights"], right["static QDQ, 7-bit weights"])
gain = 100 * (test8["b"] - test8["c"]) / test8["n"]
flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
vnni = "yes" if "vnni" in flags else "no" if flags else "unknown"
print(f"8-bit weights against 7-bit: {gain:+.2f} points, McNemar p = {test8['p']:.2g} -> "
      f"{'within noise' if test8['p'] >= 0.05 else 'a real difference'} (this CPU has VNNI: {vnni})")

# %% md slide
# ## The comparison: every variant, measured the same way

# %% code skip
# measure every variant (the deck shows the table and the plots)
variants = [
    compress.Variant("teacher fp32 (torch)", teacher),
    compress.Variant("teacher int8 static (torch)", teacher_int8),
    compress.Variant("student fp32 (torch)", student),
    compress.Variant("no-KD student fp32 (torch)", alone),
    compress.Variant("student int8 dynamic (torch)", student_dynamic),
    compress.Variant("student int8 static (torch)", student_int8),
    compress.Variant("student fp32 (ONNX Runtime)", session, student_onnx),
    compress.Variant("student int8 QDQ (ONNX Runtime)", session_int8, student_onnx_int8),
]
rows = compress.comparison_table(variants, test, batch_sizes=(1, 64), threads=1)
by_name = {r["name"]: r for r in rows}
teacher_row = by_name["teacher fp32 (torch)"]

# %% code subslide
def spread(r, b):
    return f"{r[f'latency_b{b}_ms']:.3g} ({r[f'latency_b{b}_p10_ms']:.3g}-{r[f'latency_b{b}_p90_ms']:.3g})"

print("| variant | bytes | batch 1 (ms) | batch 64 (ms) | accuracy (%) | smaller | faster at 1 |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['name']} | {r['bytes']:,} | {spread(r, 1)} | {spread(r, 64)} | {r['accuracy']:.2f} | "
          f"{teacher_row['bytes'] / r['bytes']:.1f}x | {teacher_row['latency_b1_ms'] / r['latency_b1_ms']:.1f}x |")
print("latency: median (p10-p90) of 50 calls after 10 warm-up calls, 1 thread; "
      "ratios against the fp32 teacher in torch")

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
students = [r for r in rows if r["name"].startswith("student")]    # the distilled student's forms
deployed = min(students, key=lambda r: r["latency_b1_ms"])         # the fastest student variant, as measured
sources = {"teacher int8 static (torch)": "teacher fp32 (torch)",
           "student int8 dynamic (torch)": "student fp32 (torch)",
           "student int8 static (torch)": "student fp32 (torch)",
           "student int8 QDQ (ONNX Runtime)": "student fp32 (ONNX Runtime)"}
int8_change = {n: by_name[n]["accuracy"] - by_name[s]["accuracy"] for n, s in sources.items()}
same_runtime_speedup = {n: {b: by_name[s][f"latency_b{b}_ms"] / by_name[n][f"latency_b{b}_ms"] for b in (1, 64)}
                        for n, s in sources.items()}
margin = profile.claim("07.deployed_within_teacher_points")
if margin is not None:
    assert teacher_row["accuracy"] - deployed["accuracy"] <= margin, deployed
margin = profile.claim("07.int8_within_points")
if margin is not None:
    assert all(abs(d) <= margin for d in int8_change.values()), int8_change

# %% md slide
# ## Reading the results: which step bought what
#
# Every verdict below is computed from this run's numbers: a latency difference counts only when the
# p10-p90 spreads do not overlap, an accuracy difference only when McNemar's exact test on the same
# test images gives p < 0.05. Latency depends on the machine, its load and the thread count.

# %% code skip
# the verdict rules of the slide above, and the paired test of distillation (the next slide prints them)
def faster(new, old, b):
    """Is `new` faster than `old` at batch b, judged by the spreads?"""
    if new[f"latency_b{b}_p90_ms"] < old[f"latency_b{b}_p10_ms"]:
        return "faster"
    return "slower" if new[f"latency_b{b}_p10_ms"] > old[f"latency_b{b}_p90_ms"] else "no clear difference"


def accuracy_verdict(test_result, points):
    return "within noise" if test_result["p"] >= 0.05 else "a real gain" if points > 0 else "a real loss"


fp32_student, no_kd = by_name["student fp32 (torch)"], by_name["no-KD student fp32 (torch)"]
kd_test = mcnemar_test(compress.logits_of(student, test.x).argmax(-1) == test.y,
                       compress.logits_of(alone, test.x).argmax(-1) == test.y)
kd_points = fp32_student["accuracy"] - no_kd["accuracy"]
ort_row = by_name["student fp32 (ONNX Runtime)"]

# %% code subslide
print(f"distillation: {kd_points:+.2f} points over the same student on labels alone (b = {kd_test['b']}, "
      f"c = {kd_test['c']}, McNemar p = {kd_test['p']:.2g}) -> {accuracy_verdict(kd_test, kd_points)}; "
      f"{teacher_row['parameters'] / fp32_student['parameters']:.0f}x fewer parameters than the teacher, "
      f"{fp32_student['accuracy'] - teacher_row['accuracy']:+.2f} points from it")
print("the runtime (fp32 student, ONNX Runtime against torch): " + "; ".join(
    f"batch {b}: {fp32_student[f'latency_b{b}_ms'] / ort_row[f'latency_b{b}_ms']:.1f}x "
    f"({faster(ort_row, fp32_student, b)})" for b in (1, 64)))
print("int8 against its fp32 source in the same runtime (accuracy; speed-up at batch 1, 64):")
for n, src in sources.items():
    print(f"  {n:<32} {int8_change[n]:+.2f} points; " + ", ".join(
        f"{same_runtime_speedup[n][b]:.2f}x ({faster(by_name[n], by_name[src], b)})" for b in (1, 64)))
print(f"deployed (the fastest student form at batch 1): {deployed['name']}, "
      f"{teacher_row['latency_b1_ms'] / deployed['latency_b1_ms']:.0f}x faster than the fp32 teacher in torch at "
      f"batch 1 ({faster(deployed, teacher_row, 1)}), {teacher_row['bytes'] / deployed['bytes']:.0f}x smaller, "
      f"{deployed['accuracy'] - teacher_row['accuracy']:+.2f} points")

# %% md slide
# ## Common mistakes
#
# - **Estimating instead of measuring**: "size / 4" (the source article's int8 size), or a speed-up
#   assumed from the bit width. The file is not 4x smaller (scales, zero points, fp32 biases, container).
# - **Quantizing an untrained model**: accuracy after int8 means nothing then.
# - **`quantize_dynamic` on a CNN** (the source article's MobileNetV3 call) read as "the model is int8":
#   only the Linear layers changed; the convolutions stay fp32 unless asked for.
# - **Crediting distillation without a control**: compare with the same student trained without a
#   teacher, on the same test images, with a paired test.
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
                             **{k: r3(r[k]) for k in r if k.startswith("latency_")},
                             "accuracy": round(r["accuracy"], 2)} for r in rows},
    "distillation": {"points_over_no_kd": round(kd_points, 2), "mcnemar_b": kd_test["b"], "mcnemar_c": kd_test["c"],
                     "mcnemar_p": float(f"{kd_test['p']:.3g}")},
    "size_ratio": {name: {form: round(size["fp32"] / size[form], 2) for form in ("dynamic", "static")}
                   for name, size in sizes.items()},
    "size_breakdown": parts,
    "ort_alternatives": {k: {"accuracy": round(100 * float(right[k].float().mean()), 2),
                             "latency_b64_ms": r3(b64[k].median_ms)} for k in ort_runs},
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
# Open `exercises/ex07_quantization.py`: its docstrings give contracts, not formulas.
#
# | function | level | points | time | task |
# |---|---|---:|---:|---|
# | `fake_quantize` | warm-up | 4 | ~10 min | implement |
# | `serialized_bytes` | warm-up | 3 | ~10 min | implement |
# | `quantization_params` | core | 5 | ~20 min | implement |
# | `parity` | core | 5 | ~15 min | implement |
# | `per_channel_fake_quantize` | stretch | 3 | ~15 min | apply |
#
# Grade with the cell below or `python -m course_lib.grading exercises --only ex07`; a wrong answer gets
# a hint naming its mistake. `course_lib.compress` is printed *after* this exercise.

# %% code skip
from course_lib.grading import self_check
self_check("ex07")      # grades exercises/ (the checkout's, or on Colab the clone's) in an isolated process

# %% md slide
# ## Summary and further reading
#
# - A deployment claim is three measurements - bytes, latency (batch, threads, spread) and accuracy - of
#   every variant, on the same test set, against the same reference.
# - Static int8 needs fusion and calibration; dynamic int8 is for Linear-heavy models (by default it
#   leaves convolutions alone); ONNX Runtime has less per-call overhead than eager torch and its own
#   int8 kernels - whether that pays for a given model is a measurement.
# - int8 weights are a quarter of fp32's; a small model's file shrinks less (quantization parameters,
#   fp32 biases, the container): count the bytes.
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
