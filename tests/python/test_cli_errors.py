"""Every bad input to `basin analyze --local` gets a non-zero exit code and one `basin: error:` line on
stderr that names the offending field and the value that was expected: no crash, no abort, no JSON."""

import numpy as np
import pytest

SPEC = {"input_dim": 3, "layers": [{"type": "dense", "out": 4}, {"type": "tanh"}, {"type": "dense", "out": 2}]}
N, D, K, NEX = 26, 3, 2, 5  # parameters, input_dim, outputs, examples

EXIT_INVALID = 2  # invalid argument (documented by the CLI's exit_code_for)
EXIT_RESOURCE = 3  # resource exhausted


def _good(rng):
    return dict(params=rng.normal(size=N), inputs=rng.normal(size=(NEX, D)), targets=rng.normal(size=(NEX, K)),
                labels=np.array([0, 1, 1, 0, 1], dtype=np.int64))


class Case:
    """A CLI invocation built from the good defaults with some pieces replaced."""

    def __init__(self, basin):
        self.basin = basin
        rng = np.random.default_rng(0)
        g = _good(rng)
        self.files = {
            "model": basin.spec(SPEC, "model.json"),
            "params": basin.npy("params.npy", g["params"]),
            "inputs": basin.npy("inputs.npy", g["inputs"]),
            "targets": basin.npy("targets.npy", g["targets"]),
        }
        self.labels = basin.npy("labels.npy", g["labels"])
        self.good = g

    def args(self, loss="mse", drop=(), extra=(), **replace):
        files = dict(self.files)
        if loss == "cross_entropy":
            files["targets"] = self.labels
        if loss == "none":
            files.pop("targets")
        for key, value in replace.items():
            files[key] = value
        out = ["analyze", "--local"]
        for key in ("model", "params", "inputs", "targets"):
            if key in files and key not in drop:
                out += [f"--{key}", files[key]]
        out += ["--loss", loss] + list(extra) + ["--json"]
        return out


@pytest.fixture
def case(basin):
    return Case(basin)


def expect_error(basin, args, *words, code=EXIT_INVALID):
    r = basin.run(args)
    assert r.returncode == code, (f"exit code {r.returncode}, expected {code}; args {args}\n"
                                  f"stdout: {r.stdout[:500]}\nstderr: {r.stderr}")
    assert r.stdout.strip() == "", f"no JSON on failure, got stdout: {r.stdout[:500]}"
    line = r.error  # exactly one `basin: error:` line
    low = line.lower()
    for w in words:
        assert w.lower() in low, f"error message lacks {w!r}: {line}"
    return line


def test_good_input_succeeds(basin, case):
    """The defaults the error cases perturb are themselves valid (so each failure is the perturbation's)."""
    for loss in ("mse", "cross_entropy", "none"):
        res = basin.run(case.args(loss=loss, extra=["--want", "jacobian"])).json()
        assert res["num_params"] == N


# --- parameters ----------------------------------------------------------------------------------

def test_params_wrong_length(basin, case):
    p = basin.npy("p25.npy", np.zeros(N - 1))
    expect_error(basin, case.args(params=p), "params", "25", str(N))
    p = basin.npy("p27.npy", np.zeros(N + 1))
    expect_error(basin, case.args(params=p), "params", "27", str(N))


def test_params_two_dimensional_of_the_wrong_width(basin, case):
    p = basin.npy("p2d.npy", np.zeros((2, 13)))
    expect_error(basin, case.args(params=p), "params", "(2, 13)", "checkpoints", f"(B, {N})")


def test_params_three_dimensional(basin, case):
    p = basin.npy("p3d.npy", np.zeros((2, 1, N)))
    expect_error(basin, case.args(params=p), "params", "(2, 1, 26)", "1-D", f"(B, {N})")


def test_params_no_checkpoints(basin, case):
    p = basin.npy("p0.npy", np.zeros((0, N)))
    expect_error(basin, case.args(params=p), "params", "(0, 26)", "B >= 1")


def test_params_bad_checkpoint_is_named(basin, case):
    p = np.stack([case.good["params"]] * 3)
    p[1, 4] = np.nan
    expect_error(basin, case.args(params=basin.npy("pck.npy", p)), "params[1]", "[4]", "nan", "finite")


def test_save_jacobian_takes_one_checkpoint(basin, case):
    p = basin.npy("pck2.npy", np.stack([case.good["params"]] * 2))
    expect_error(basin, case.args(params=p, extra=["--save-jacobian", basin.path("G.npy")]),
                 "--save-jacobian", "2 checkpoints", "one")


@pytest.mark.parametrize("dtype", ["<i8", "<i4"])
def test_params_integer_dtype(basin, case, dtype):
    p = basin.npy("pint.npy", np.zeros(N, dtype=dtype))
    expect_error(basin, case.args(params=p), "params", "int", "float32", "float64")


# --- inputs --------------------------------------------------------------------------------------

def test_inputs_wrong_width(basin, case):
    x = basin.npy("x4.npy", np.zeros((NEX, 4)))
    expect_error(basin, case.args(inputs=x), "inputs", "(5, 4)", "(n, 3)")


def test_inputs_one_dimensional(basin, case):
    x = basin.npy("x1d.npy", np.zeros(NEX))
    expect_error(basin, case.args(inputs=x), "inputs", "(5,)", "(n, 3)")


@pytest.mark.parametrize("loss", ["mse", "none"])
def test_inputs_empty(basin, case, loss):
    x = basin.npy("x0.npy", np.zeros((0, D)))
    y = basin.npy("y0.npy", np.zeros((0, K)))
    args = case.args(loss=loss, inputs=x, targets=y) if loss == "mse" else case.args(loss=loss, inputs=x)
    expect_error(basin, args, "inputs", "no examples", "at least one")


# --- non-finite values ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad,word", [(np.nan, "nan"), (np.inf, "infinite"), (-np.inf, "infinite")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_finite_params(basin, case, bad, word, dtype):
    p = case.good["params"].astype(dtype)
    p[7] = bad
    expect_error(basin, case.args(params=basin.npy("pbad.npy", p)), "params", "[7]", word, "finite")


@pytest.mark.parametrize("bad,word", [(np.nan, "nan"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_non_finite_inputs(basin, case, bad, word):
    x = case.good["inputs"].copy()
    x[2, 1] = bad
    expect_error(basin, case.args(inputs=basin.npy("xbad.npy", x)), "inputs", "[2, 1]", word, "finite")


@pytest.mark.parametrize("bad,word", [(np.nan, "nan"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_non_finite_targets(basin, case, bad, word):
    y = case.good["targets"].copy()
    y[4, 0] = bad
    expect_error(basin, case.args(targets=basin.npy("ybad.npy", y)), "targets", "[4, 0]", word, "finite")


# --- targets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(NEX, 3), (4, K), (NEX * K,), (NEX, K, 1)])
def test_targets_shape_mismatch(basin, case, shape):
    y = basin.npy("yshape.npy", np.zeros(shape))
    expect_error(basin, case.args(targets=y), "targets", "(5, 2)")


def test_float_targets_for_cross_entropy(basin, case):
    y = basin.npy("yfloat.npy", np.zeros(NEX))
    expect_error(basin, case.args(loss="cross_entropy", targets=y), "targets", "float64", "int", "cross_entropy")


def test_int_targets_for_mse(basin, case):
    y = basin.npy("yint.npy", np.zeros((NEX, K), dtype=np.int64))
    expect_error(basin, case.args(loss="mse", targets=y), "targets", "int64", "float", "mse")


def test_labels_wrong_shape(basin, case):
    y = basin.npy("y2d.npy", np.zeros((NEX, 1), dtype=np.int64))
    expect_error(basin, case.args(loss="cross_entropy", targets=y), "targets", "(5,)")


@pytest.mark.parametrize("label", [-1, K, 1000])
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_labels_out_of_range(basin, case, label, dtype):
    y = np.array([0, 1, 1, 0, 1], dtype=dtype)
    y[3] = label
    msg = expect_error(basin, case.args(loss="cross_entropy", targets=basin.npy("ybadlabel.npy", y)),
                       "label", str(label), str(K))
    assert "[3]" in msg, msg


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_missing_targets(basin, case, loss):
    expect_error(basin, case.args(loss=loss, drop=("targets",)), "--targets", "missing", loss)


# --- model spec ----------------------------------------------------------------------------------

def spec_with(layers, **top):
    d = {"input_dim": D, "layers": layers}
    d.update(top)
    return d


@pytest.mark.parametrize("name,spec,words", [
    ("unknown_layer", spec_with([{"type": "dense", "out": 4}, {"type": "swish"}, {"type": "dense", "out": 2}]),
     ["layers[1]", "swish", "dense", "tanh", "leaky_relu"]),
    ("dense_without_out", spec_with([{"type": "dense"}, {"type": "dense", "out": 2}]),
     ["layers[0].out", "missing", "positive integer"]),
    ("negative_out", spec_with([{"type": "dense", "out": -4}, {"type": "dense", "out": 2}]),
     ["layers[0].out", "-4", "positive integer"]),
    ("zero_out", spec_with([{"type": "dense", "out": 0}, {"type": "dense", "out": 2}]),
     ["layers[0].out", "0", "positive integer"]),
    ("fractional_out", spec_with([{"type": "dense", "out": 4.5}, {"type": "dense", "out": 2}]),
     ["layers[0].out", "4.5", "positive integer"]),
    ("unknown_top_field", spec_with([{"type": "dense", "out": 2}], layrs=[]),
     ["layrs", "unknown field", "input_dim", "layers"]),
    ("unknown_layer_field", spec_with([{"type": "dense", "out": 2, "bais": False}]),
     ["layers[0].bais", "unknown field", "bias"]),
    ("missing_input_dim", {"layers": [{"type": "dense", "out": 2}]}, ["input_dim", "missing", "positive integer"]),
    ("bias_not_bool", spec_with([{"type": "dense", "out": 2, "bias": "yes"}]), ["layers[0].bias", "true", "false"]),
    ("no_dense_layer", spec_with([{"type": "tanh"}]), ["layers", "dense"]),
])
def test_bad_model_spec(basin, case, name, spec, words):
    m = basin.spec(spec, f"{name}.json")
    expect_error(basin, case.args(model=m), "--model", *words)


def test_malformed_json(basin, case):
    m = basin.raw("broken.json", '{"input_dim": 3, "layers": [')
    expect_error(basin, case.args(model=m), "--model", "broken.json", "json")


def test_leaky_relu_default_alpha_is_pytorch_default(basin, case):
    """Not an error: leaky_relu without alpha means PyTorch's default negative_slope = 0.01."""
    import torch
    spec = spec_with([{"type": "dense", "out": 4}, {"type": "leaky_relu"}, {"type": "dense", "out": 2}])
    res = basin.run(case.args(model=basin.spec(spec, "leaky.json"), extra=["--want", "jacobian"])).json()
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LeakyReLU(), torch.nn.Linear(4, 2)).double()
    torch.nn.utils.vector_to_parameters(torch.as_tensor(case.good["params"]), model.parameters())
    with torch.no_grad():
        want = model(torch.as_tensor(case.good["inputs"])).numpy()
    np.testing.assert_allclose(res["outputs"], want, rtol=0, atol=1e-13)


# --- .npy format ---------------------------------------------------------------------------------

def test_not_an_npy_file(basin, case):
    p = basin.raw("text.npy", "hello, this is not an npy file\n")
    expect_error(basin, case.args(params=p), "params", "text.npy", "npy")


def test_truncated_npy_data(basin, case):
    raw = open(case.files["params"], "rb").read()
    p = basin.raw("trunc.npy", raw[:-16])
    expect_error(basin, case.args(params=p), "params", "trunc", str(N * 8))


def test_truncated_npy_header(basin, case):
    raw = open(case.files["params"], "rb").read()
    p = basin.raw("trunch.npy", raw[:40])
    expect_error(basin, case.args(params=p), "params", "trunc", "header")


def test_big_endian(basin, case):
    p = basin.npy("be.npy", case.good["params"].astype(">f8"))
    expect_error(basin, case.args(params=p), "params", ">f8", "little-endian", "<f8")


def test_fortran_order(basin, case):
    x = basin.npy("fortran.npy", np.asfortranarray(case.good["inputs"]))
    expect_error(basin, case.args(inputs=x), "inputs", "fortran", "c order")


@pytest.mark.parametrize("dtype,descr", [(np.complex128, "<c16"), (np.bool_, "|b1"), (np.float16, "<f2")])
@pytest.mark.parametrize("field", ["params", "inputs"])
def test_unsupported_dtype(basin, case, dtype, descr, field):
    arr = case.good[field].astype(dtype)
    path = basin.npy(f"{field}_{np.dtype(dtype).name}.npy", arr)
    expect_error(basin, case.args(**{field: path}), field, descr, "float32", "float64")


# --- flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("want", ["ggn", "hessian", "jacobian,ggn"])
def test_loss_none_with_ggn_or_hessian(basin, case, want):
    word = "hessian" if want == "hessian" else "ggn"
    expect_error(basin, case.args(loss="none", extra=["--want", want]), "loss", "none", word, "mse", "cross_entropy")


def test_unknown_want_word(basin, case):
    expect_error(basin, case.args(extra=["--want", "jacobian,eigen"]), "want", "eigen", "jacobian", "ggn", "hessian",
                 "per_parameter")


@pytest.mark.parametrize("flag,value,expected", [
    ("--method", "qr", ["auto", "gram", "normal", "svd"]),
    ("--dtype", "float16", ["float64", "float32"]),
    ("--reduction", "none", ["mean", "sum"]),
])
def test_unknown_flag_values(basin, case, flag, value, expected):
    expect_error(basin, case.args(extra=[flag, value]), flag, value, *expected)


def test_unknown_loss(basin, case):
    args = case.args()
    args[args.index("--loss") + 1] = "l1"
    expect_error(basin, args, "--loss", "l1", "mse", "cross_entropy", "none")


@pytest.mark.parametrize("missing,words", [("inputs", ["--inputs", "missing", "input_dim"]),
                                           ("model", ["--model", "missing"]),
                                           ("params", ["--params", "missing", str(N)])])
def test_missing_required_flag(basin, case, missing, words):
    expect_error(basin, case.args(drop=(missing,)), *words)


@pytest.mark.parametrize("flag,value", [("--rtol", "nan"), ("--rtol", "-1"), ("--atol", "inf"), ("--atol", "abc"),
                                        ("--hessian-limit", "0"), ("--hessian-limit", "-5")])
def test_bad_numeric_flags(basin, case, flag, value):
    expect_error(basin, case.args(extra=[flag, value]), flag.lstrip("-"), value)


def test_flag_missing_its_value(basin, case):
    expect_error(basin, case.args()[:-1] + ["--method"], "--method", "missing")


def test_hessian_over_limit(basin, case):
    expect_error(basin, case.args(extra=["--want", "hessian", "--hessian-limit", "10"]),
                 "hessian", str(N), "10", "--hessian-limit", code=EXIT_RESOURCE)
    # under the limit, or without hessian in --want, the same limit is fine
    assert basin.run(case.args(extra=["--want", "hessian", "--hessian-limit", str(N)])).returncode == 0
    assert basin.run(case.args(extra=["--want", "jacobian,ggn", "--hessian-limit", "10"])).returncode == 0


def test_hessian_over_default_limit(basin, case):
    spec = {"input_dim": 1, "layers": [{"type": "dense", "out": 64}, {"type": "tanh"}, {"type": "dense", "out": 64},
                                       {"type": "tanh"}, {"type": "dense", "out": 1}]}
    n_params = 64 * 2 + 64 * 65 + 65  # 4353 > 4096
    p = basin.npy("pbig.npy", np.zeros(n_params))
    x = basin.npy("xbig.npy", np.zeros((3, 1)))
    y = basin.npy("ybig.npy", np.zeros((3, 1)))
    expect_error(basin, case.args(model=basin.spec(spec, "big.json"), params=p, inputs=x, targets=y,
                                  extra=["--want", "hessian"]),
                 "hessian", str(n_params), "4096", code=EXIT_RESOURCE)


@pytest.mark.parametrize("field", ["params", "inputs", "targets", "model"])
def test_missing_file(basin, case, field):
    path = basin.path(f"does_not_exist_{field}.npy")
    expect_error(basin, case.args(**{field: path}), field, "does_not_exist", "cannot open")


def test_targets_with_loss_none(basin, case):
    args = case.args(loss="none", targets=case.files["targets"])
    expect_error(basin, args, "--targets", "none", "mse", "cross_entropy")


# --- values that overflow -------------------------------------------------------------------------
# Finite in the file but not representable (float32 compute) or overflowing inside the computation:
# Basin must not compute silently with inf, nor leak a LAPACK internal error.

@pytest.mark.parametrize("field,index", [("params", (0,)), ("inputs", (0, 0))])
def test_values_outside_float32_range(basin, case, field, index):
    arr = case.good[field].copy()
    arr[index] = 1e39  # > float32 max (3.4e38): becomes inf when cast
    r = basin.run(case.args(**{field: basin.npy(f"{field}_1e39.npy", arr)}, extra=["--dtype", "float32"]))
    assert r.returncode != 0, (f"{field} value 1e39 with --dtype float32 was accepted (exit 0); "
                               f"it is inf in float32. stdout: {r.stdout[:300]}")
    msg = r.error.lower()
    assert field in msg and "float32" in msg, r.error
    assert "lapack" not in msg, f"internal error leaked instead of a message about {field}: {r.error}"


@pytest.mark.parametrize("what", ["inputs_1e300", "output_bias_1e200"])
def test_overflow_during_computation_is_reported_clearly(basin, case, what):
    """Either every requested number comes back finite, or a clear error (not a LAPACK internal one)."""
    if what == "inputs_1e300":
        x = case.good["inputs"].copy()
        x[0, 0] = 1e300  # G's entries ~1e300: the Gram overflows
        args = case.args(inputs=basin.npy("x1e300.npy", x), extra=["--want", "jacobian,ggn,hessian"])
    else:
        p = case.good["params"].copy()
        p[-2:] = 1e200  # outputs ~1e200: the MSE loss overflows
        args = case.args(params=basin.npy("p1e200.npy", p), extra=["--want", "jacobian,ggn,hessian"])
    r = basin.run(args)
    if r.returncode == 0:
        res = r.json()
        for key in ("loss", "grad_norm"):
            assert res[key] is not None, f"exit 0 but {key} is null (non-finite) with --loss mse: {what}"
        assert res["hessian"]["residual_rel"] is not None, f"exit 0 but hessian.residual_rel is null: {what}"
    else:
        msg = r.error.lower()
        assert "lapack" not in msg and "illegal argument" not in msg, f"internal error leaked: {r.error}"
        assert "finite" in msg or "overflow" in msg, r.error


def test_constants_need_an_onnx_model(basin, case):
    """--constants names ONNX initialisers; a JSON layer list has none to name."""
    expect_error(basin, case.args(loss="mse", extra=["--constants", "0.weight"]), "--constants", ".onnx")
