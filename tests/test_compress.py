"""course_lib.compress: ONNX export parity, dynamic batch axis, size accounting, int8 accuracy, errors.

One small StudentCNN is trained for two epochs on toy images (a faint stripe, whose row is the
class, in unit noise: hard enough that the student falls well short of 100%, so that an
int8 accuracy loss could show) and shared by the tests. No test asserts a wall-clock figure:
latency is checked for its structure only.
"""
import sys

import pytest
import torch

from course_lib import compress
from course_lib.data import TensorData
from course_lib.engine import Execution, RunSpec, TrainConfig, fit
from course_lib.models import StudentCNN, TeacherCNN, ViT

# int8 accuracy may differ from fp32 by at most this many points on the same 400 test images (a
# margin wide enough for any seed or machine; the claim it protects is "int8 keeps the accuracy")
INT8_TOLERANCE_POINTS = 3.0

# torch.ao.quantization announces its own deprecation (in favour of torchao, which is not a
# dependency: it makes `import transformers` print warnings) and its convert() warns that quantized
# tensor dtypes are deprecated; course_lib.compress explains the choice. Only these two are
# expected; any other warning still shows.
pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"),
]


def toy_images(n, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 28, 28, generator=g)
    x[torch.arange(n), 0, y * 2, :] += 1.5
    return TensorData(x, y, tuple(str(c) for c in range(classes)), "toy")


@pytest.fixture(scope="module", autouse=True)
def few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained():
    train, test = toy_images(320, seed=0), toy_images(400, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=3e-3, weight_decay=1e-2, eval_every=2)
    run = fit(StudentCNN, [RunSpec("alone", 0)], train, cfg, execution=Execution(device="cpu", progress=False))[0]
    return run.model.cpu().eval(), train, test


@pytest.fixture(scope="module")
def onnx_path(trained, tmp_path_factory):
    model, train, _ = trained
    return compress.export_onnx(model, train.x[:4], tmp_path_factory.mktemp("onnx") / "student.onnx")


def test_export_parity_fp32(trained, onnx_path):
    model, _, test = trained
    session = compress.ort_session(onnx_path, threads=1)
    parity = compress.onnx_parity(model, session, test.x)
    assert parity["max_rel_error"] < 1e-4
    assert parity["top1_agreement"] == 100.0
    assert compress.model_accuracy(session, test) == pytest.approx(compress.model_accuracy(model, test))


def test_dynamic_batch_axis(trained, onnx_path):
    model, _, test = trained
    session = compress.ort_session(onnx_path)
    for b in (1, 7):
        out = compress.ort_logits(session, test.x[:b])
        assert out.shape == (b, 10)
        assert torch.allclose(out, model(test.x[:b]).detach(), rtol=1e-4, atol=1e-4)


def test_size_accounting_with_external_data(trained, tmp_path):
    model, train, _ = trained
    path = compress.export_onnx(model, train.x[:2], tmp_path / "ext.onnx", external_data=True)
    data_files = [f for f in tmp_path.iterdir() if f != path]
    assert data_files, "the exporter wrote no external-data file"
    assert compress.size_on_disk(path) == sum(f.stat().st_size for f in tmp_path.iterdir())
    assert compress.size_on_disk(path) > path.stat().st_size
    # 20,490 float32 weights live somewhere in those bytes
    assert compress.size_on_disk(path) > 4 * 20_490
    single = compress.export_onnx(model, train.x[:2], tmp_path / "single" / "one.onnx")
    assert compress.size_on_disk(single) == single.stat().st_size
    assert compress.onnx_parameters(single) == 20_490
    for f in data_files:
        f.unlink()
    with pytest.raises(FileNotFoundError, match="external data"):
        compress.size_on_disk(path)


def test_size_of_torch_model_is_its_saved_state_dict(trained):
    model, _, _ = trained
    assert 4 * 20_490 < compress.size_on_disk(model) < 4 * 20_490 + 10_000


def test_static_int8_accuracy_close_to_fp32_and_smaller(trained):
    model, train, test = trained
    q = compress.quantize_static_int8(model, train.subset(200))
    fp32, int8 = compress.model_accuracy(model, test), compress.model_accuracy(q, test)
    assert fp32 > 50.0, "the toy student did not learn; the comparison would say nothing"
    assert abs(int8 - fp32) <= INT8_TOLERANCE_POINTS, (fp32, int8)
    assert compress.size_on_disk(q) < compress.size_on_disk(model) / 2
    assert compress.torch_parameters(q) == compress.torch_parameters(model) == 20_490   # packed weights counted
    # the fp32 model is left as it was
    assert all(type(m).__module__.startswith("torch.nn.modules") for m in model.children())


def test_size_breakdown_adds_up_and_explains_the_ratio(trained):
    """The four parts add up to the file; fp32 is all unquantized payload; static int8 stores one byte
    per weight, fp32 biases, per-channel scales and zero points; dynamic int8 leaves the convolutions
    in fp32."""
    model, train, _ = trained
    weights = {n: p.numel() for n, p in model.named_parameters() if n.endswith("weight")}
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias"))
    fp32 = compress.size_breakdown(model)
    assert sum(fp32.values()) == compress.size_on_disk(model)
    assert fp32["unquantized"] == 4 * 20_490 and fp32["int8"] == fp32["qparams"] == 0
    assert fp32["container"] > 0
    q = compress.quantize_static_int8(model, train.subset(200))
    static = compress.size_breakdown(q)
    assert sum(static.values()) == compress.size_on_disk(q)
    assert static["int8"] == sum(weights.values())
    assert static["unquantized"] == 4 * biases
    channels = sum(m.out_features if isinstance(m, torch.nn.Linear) else m.out_channels
                   for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    # per channel: a float64 scale and an int64 zero point; per quantized module and for the input:
    # a float32 activation scale and an int64 zero point
    assert static["qparams"] == 16 * channels + 12 * (3 + 1)
    dynamic = compress.size_breakdown(compress.quantize_dynamic_int8(model)[0])
    assert dynamic["int8"] == weights["fc.weight"]
    assert dynamic["unquantized"] == 4 * (20_490 - weights["fc.weight"])


def test_dynamic_int8_on_cnn_replaces_only_the_linear(trained):
    model, _, test = trained
    q, replaced = compress.quantize_dynamic_int8(model)
    assert replaced == ["fc"]
    assert type(q.conv1) is torch.nn.Conv2d
    assert compress.torch_parameters(q) == 20_490
    assert abs(compress.model_accuracy(q, test) - compress.model_accuracy(model, test)) <= INT8_TOLERANCE_POINTS


def test_ort_static_qdq_close_to_fp32(trained, onnx_path, tmp_path):
    model, train, test = trained
    q_path = compress.ort_quantize_static(onnx_path, tmp_path / "int8.onnx", train.subset(200))
    session = compress.ort_session(q_path)
    assert abs(compress.model_accuracy(session, test) - compress.model_accuracy(model, test)) <= INT8_TOLERANCE_POINTS
    assert compress.size_on_disk(q_path) < compress.size_on_disk(onnx_path) / 2


def test_ort_dynamic_quantizes_gemm(trained, onnx_path, tmp_path):
    model, _, test = trained
    q_path = compress.ort_quantize_dynamic(onnx_path, tmp_path / "dyn.onnx")
    parity = compress.onnx_parity(model, compress.ort_session(q_path), test.x)
    assert parity["top1_agreement"] >= 95.0


def test_export_refuses_training_mode(tmp_path):
    with pytest.raises(ValueError, match="training mode"):
        compress.export_onnx(StudentCNN().train(), torch.randn(2, 1, 28, 28), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28)])
def test_export_refuses_wrong_shape(tmp_path, shape):
    with pytest.raises(ValueError, match="does not match the model"):
        compress.export_onnx(StudentCNN().eval(), torch.randn(*shape), tmp_path / "m.onnx")


def test_export_names_missing_onnxscript(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)   # makes `import onnxscript` raise ImportError
    with pytest.raises(ImportError, match="pip install onnxscript"):
        compress.export_onnx(StudentCNN().eval(), torch.randn(2, 1, 28, 28), tmp_path / "m.onnx")


def test_latency_structure_and_threads_restored(trained, onnx_path):
    model, _, test = trained
    before = torch.get_num_threads()
    lat = compress.measure_latency(model, test.x[:8], warmup=1, repeats=5, threads=1)
    assert torch.get_num_threads() == before
    assert (lat.batch_size, lat.threads, lat.repeats, lat.runtime) == (8, 1, 5, "torch")
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    assert "1 thread" in str(lat)
    ort_lat = compress.measure_latency(compress.ort_session(onnx_path, threads=1), test.x[:1], warmup=1, repeats=3)
    assert (ort_lat.runtime, ort_lat.threads, ort_lat.batch_size) == ("onnxruntime", 1, 1)
    with pytest.raises(ValueError, match="threads=2"):
        compress.measure_latency(compress.ort_session(onnx_path, threads=1), test.x[:1], threads=2)


def test_comparison_table_rows(trained, onnx_path):
    model, _, test = trained
    small = TensorData(test.x[:64], test.y[:64], test.classes)
    rows = compress.comparison_table(
        [compress.Variant("student fp32", model),
         compress.Variant("student ONNX", compress.ort_session(onnx_path), onnx_path)],
        small, warmup=1, repeats=3)
    assert [r["name"] for r in rows] == ["student fp32", "student ONNX"]
    for r in rows:
        assert set(r) == {"name", "bytes", "parameters", "threads", "accuracy"} | {
            f"latency_b{b}_{k}" for b in (1, 64) for k in ("ms", "p10_ms", "p90_ms")}
        assert r["bytes"] > 0 and r["latency_b1_ms"] > 0 and 0 <= r["accuracy"] <= 100
        for b in (1, 64):
            assert 0 < r[f"latency_b{b}_p10_ms"] <= r[f"latency_b{b}_ms"] <= r[f"latency_b{b}_p90_ms"]
    assert rows[0]["parameters"] == rows[1]["parameters"] == 20_490


def test_module_form_and_fusion_groups_of_the_course_cnns(trained):
    model, _, test = trained
    network = compress._module_form(model)
    assert torch.equal(network(test.x[:16]), model(test.x[:16]))       # the same function, modules only
    assert compress._fusion_groups(network) == [["0", "1"], ["2", "3"]]
    teacher = TeacherCNN()
    assert compress._fusion_groups(compress._module_form(teacher)) == [
        ["features.0", "features.1", "features.2"], ["features.4", "features.5", "features.6"],
        ["features.8", "features.9", "features.10"], ["head.1", "head.2"]]
    with pytest.raises(TypeError, match="ort_quantize_static"):
        compress.quantize_static_int8(ViT(patch_size=7, dim=16, depth=1, heads=2), test.x[:8])


def test_static_int8_of_the_teacher_cnn_keeps_its_accuracy(trained):
    _, train, test = trained
    cfg = TrainConfig(epochs=2, batch_size=32, lr=3e-3, weight_decay=1e-2, eval_every=2)
    teacher = fit(TeacherCNN, [RunSpec("teacher", 0)], train, cfg,
                  execution=Execution(device="cpu", progress=False))[0].model.cpu().eval()
    q = compress.quantize_static_int8(teacher, train.subset(200))
    fp32, int8 = compress.model_accuracy(teacher, test), compress.model_accuracy(q, test)
    assert fp32 > 50.0, "the toy teacher did not learn; the comparison would say nothing"
    assert abs(int8 - fp32) <= INT8_TOLERANCE_POINTS, (fp32, int8)
    # batch norm folded into the bias-free convolutions: its weight and bias (2 per channel) become one
    # conv bias per channel
    channels = sum(m.num_features for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert compress.torch_parameters(q) == compress.torch_parameters(teacher) - channels
    assert compress.size_on_disk(q) < compress.size_on_disk(teacher) / 3      # weights int8, batch-norm folded


def test_the_timed_call_computes_the_models_output(trained, onnx_path):
    """What measure_latency times is the model on the batch: torch's call returns its logits, ORT's
    bound call leaves them in its IOBinding."""
    model, _, test = trained
    x = test.x[:5]
    expected = model(x).detach()
    call, runtime = compress._bound_call(model, x)
    assert runtime == "torch" and torch.equal(call(), expected)
    call, runtime = compress._bound_call(compress.ort_session(onnx_path), x)
    assert runtime == "onnxruntime"
    assert torch.allclose(torch.from_numpy(call().copy_outputs_to_cpu()[0]), expected, rtol=1e-4, atol=1e-4)


def test_ort_dynamic_convolutions_only_when_asked(trained, onnx_path, tmp_path):
    """The default leaves convolutions alone; asked for, they become ConvInteger (notebook 07 times them)."""
    import onnx

    def ops(path):
        return {n.op_type for n in onnx.load(str(path)).graph.node}

    assert "ConvInteger" not in ops(compress.ort_quantize_dynamic(onnx_path, tmp_path / "default.onnx"))
    asked = compress.ort_quantize_dynamic(onnx_path, tmp_path / "conv.onnx", op_types=("Conv", "MatMul", "Gemm"))
    assert "ConvInteger" in ops(asked)
    model, _, test = trained
    assert compress.onnx_parity(model, compress.ort_session(asked), test.x)["top1_agreement"] >= 95.0


def test_torch_dynamic_conv_modules_exist_but_the_default_mapping_leaves_convolutions_alone(trained):
    """What notebook 07 and compress's docstring say about quantize_dynamic, checked against torch."""
    from torch.ao.nn.quantized import dynamic as nnqd
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    model, _, test = trained
    default = quantize_dynamic(model)                          # qconfig_spec=None: torch's default mapping
    assert type(default.conv1) is torch.nn.Conv2d and type(default.fc) is nnqd.Linear
    with pytest.warns(UserWarning, match="poor numerical accuracy"):      # torch's own advice against them
        asked = quantize_dynamic(model, {torch.nn.Conv2d: default_dynamic_qconfig},
                                 mapping={torch.nn.Conv2d: nnqd.Conv2d})
    assert type(asked.conv1) is nnqd.Conv2d and type(asked.fc) is torch.nn.Linear
    assert abs(compress.model_accuracy(asked, test) - compress.model_accuracy(model, test)) <= INT8_TOLERANCE_POINTS
