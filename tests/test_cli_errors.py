"""CLI error handling (issue 7): bad input gives one clear line on stderr, exit code 2, no traceback.

Every error the CLI prints for bad input reads ``hashplug <command>: error: <message>``. The commands run
in-process through :func:`hashplug.cli.main` on tiny random data (LSH, no torch).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from hashplug.cli import main
from hashplug.encoders import get_encoder

N_ROWS, DIM = 12, 8


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr). Exceptions other than SystemExit propagate."""
    capsys.readouterr()  # drop output of earlier steps
    try:
        code: object = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: object, err: str, command: str, *needles: str) -> None:
    """Exit 2, one line on stderr with the argparse-style prefix, every needle in it, no traceback."""
    assert code == 2, f"exit code {code!r}; stderr: {err!r}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hashplug {command}: error: "), err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A vectors file, an LSH model trained on it (.npz and .onnx) and a LanceDB table of its rows."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("lancedb")
    d = tmp_path_factory.mktemp("cli_errors")
    vectors = d / "vectors.npy"
    np.save(vectors, np.random.default_rng(0).standard_normal((N_ROWS, DIM)).astype(np.float32))
    model, onnx_file, db = d / "model.npz", d / "model.onnx", d / "db"
    assert main(["train", "lsh", "--data", str(vectors), "--k", "4", "--out", str(model), "--onnx", str(onnx_file)]) == 0
    assert main(["ingest", str(vectors), "--db", str(db), "--table", "items", "--model", str(onnx_file)]) == 0
    return {"vectors": vectors, "model": model, "onnx": onnx_file, "db": db}


@pytest.fixture(scope="module")
def vectors_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli_train") / "vectors.npy"
    np.save(path, np.random.default_rng(1).standard_normal((40, DIM)).astype(np.float32))
    return path


# ---------------------------------------------------------------------------- 1. train --param
@pytest.mark.parametrize("method", ["lsh", "itq", "biohash"])
def test_train_unknown_param_names_it_and_lists_valid_params(method, vectors_file, tmp_path, capsys):
    out = tmp_path / "m.npz"
    argv = ["train", method, "--data", vectors_file, "--k", "4", "--out", out, "--param", "foo=1"]
    code, _, err = run_cli(argv, capsys)
    valid = [p for p in get_encoder(method).get_params() if p != "k"]
    assert_usage_error(code, err, "train", "'foo'", type(get_encoder(method)).__name__, *valid)
    assert not out.exists()


def test_train_unknown_param_suggests_close_name(vectors_file, tmp_path, capsys):
    argv = ["train", "biohash", "--data", vectors_file, "--k", "4", "--out", tmp_path / "m.npz", "--param", "epoch=1"]
    code, _, err = run_cli(argv, capsys)
    assert_usage_error(code, err, "train", "'epoch'", "Did you mean 'epochs'?")


@pytest.mark.parametrize("value", ["abc", "0"])
def test_train_param_k_points_to_the_k_option(value, vectors_file, tmp_path, capsys):
    argv = ["train", "lsh", "--data", vectors_file, "--k", "4", "--out", tmp_path / "m.npz", "--param", f"k={value}"]
    code, _, err = run_cli(argv, capsys)
    assert_usage_error(code, err, "train", f"--param k={value}", "--k")


def test_train_param_without_equals_is_a_usage_error(vectors_file, tmp_path, capsys):
    argv = ["train", "lsh", "--data", vectors_file, "--k", "4", "--out", tmp_path / "m.npz", "--param", "center"]
    code, _, err = run_cli(argv, capsys)
    assert_usage_error(code, err, "train", "key=value", "'center'")


@pytest.mark.parametrize(
    ("method", "param", "name"),
    [("itq", "n_iter=abc", "n_iter"), ("itq", "n_iter=-1", "n_iter"), ("lsh", "random_state=abc", "random_state")],
)
def test_train_bad_param_value_is_a_clear_error(method, param, name, vectors_file, tmp_path, capsys):
    argv = ["train", method, "--data", vectors_file, "--k", "4", "--out", tmp_path / "m.npz", "--param", param]
    code, _, err = run_cli(argv, capsys)
    assert_usage_error(code, err, "train", f"'{name}'")


def test_train_valid_param_still_trains(vectors_file, tmp_path, capsys):
    out = tmp_path / "m.npz"
    argv = ["train", "itq", "--data", vectors_file, "--k", "4", "--out", out, "--param", "n_iter=2"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    assert out.is_file() and "trained ITQ" in stdout


# ---------------------------------------------------------------------------- 2. search --query
@pytest.mark.parametrize(
    ("query", "detail"),
    [("abc", "not valid JSON"), ("5", "a JSON number"), ('[1, "a"]', "element 1 is 'a'"), ("[[1, 2]]", "nested"),
     ("[]", "empty")],
)
def test_search_query_must_be_a_json_array_of_numbers(query, detail, served, capsys):
    argv = ["search", "--db", served["db"], "--table", "items", "--query", query]
    code, out, err = run_cli(argv, capsys)
    assert_usage_error(code, err, "search", "JSON array of numbers", "'[0.1, 0.2, ...]'", f"got {query!r}", detail)
    assert out == ""


def test_search_valid_query_still_searches(served, capsys):
    q = np.load(served["vectors"])[3]
    argv = ["search", "--db", served["db"], "--table", "items", "--query", str(q.tolist()), "--columns", "id"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    from hashplug.cli.serve import file_row_ids  # the ids hashplug ingest gives a .npy's rows

    row3 = int(file_row_ids(str(served["vectors"]), N_ROWS)[3])
    assert '"query": 0' in out and f'"id": {row3}' in out


# ---------------------------------------------------------------------------- 3. search --row
@pytest.mark.parametrize("row", [99999, N_ROWS, -1])
def test_search_row_out_of_range_fails_naming_row_and_range(row, served, capsys):
    argv = ["search", "--db", served["db"], "--table", "items", "--query-file", served["vectors"], "--row", str(row)]
    code, out, err = run_cli(argv, capsys)
    assert code not in (0, None)
    assert_usage_error(code, err, "search", f"--row {row}", f"{N_ROWS} rows", f"0 to {N_ROWS - 1}")
    assert out == ""


def test_search_n_below_one_fails(served, capsys):
    argv = ["search", "--db", served["db"], "--table", "items", "--query-file", served["vectors"], "--n", "0"]
    code, out, err = run_cli(argv, capsys)
    assert_usage_error(code, err, "search", "--n", "got 0")
    assert out == ""


def test_search_last_rows_still_work(served, capsys):
    argv = ["search", "--db", served["db"], "--table", "items", "--query-file", served["vectors"],
            "--row", str(N_ROWS - 1), "--n", "3", "--columns", "id"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 and f'"query": {N_ROWS - 1}' in out


# ---------------------------------------------------------------------------- 4. export / eval of non-model files
def _object_npz(path: Path) -> Path:
    np.savez(path, a=np.array([{"a": 1}], dtype=object))
    return path


def _object_npy(path: Path) -> Path:
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


def _plain_pickle(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"W_": [1.0, 2.0]}))
    return path


@pytest.mark.parametrize(
    ("name", "make"), [("obj.npz", _object_npz), ("obj.npy", _object_npy), ("model.npz", _plain_pickle)]
)
@pytest.mark.parametrize("command", ["export", "eval"])
def test_pickled_model_file_is_refused_without_allow_pickle_advice(command, name, make, tmp_path, capsys):
    path = make(tmp_path / name)
    tail = ["--out", tmp_path / "x.onnx"] if command == "export" else ["--data", "digits"]
    code, _, err = run_cli([command, path, *tail], capsys)
    assert_usage_error(code, err, command, str(path), "not a valid hashplug model file", "pickle",
                       "refuses to load", "hashplug train", "--out model.npz", "encoder.save")
    assert "allow_pickle" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_export_of_onnx_file_names_the_npz_model(served, tmp_path, capsys):
    code, _, err = run_cli(["export", served["onnx"], "--out", tmp_path / "x.onnx"], capsys)
    assert_usage_error(code, err, "export", str(served["onnx"]), "not a valid hashplug model file", "ONNX",
                       "--out model.npz")
    assert "allow_pickle" not in err and "pickle" not in err


def test_export_of_plain_npy_says_it_is_not_a_model(served, tmp_path, capsys):
    code, _, err = run_cli(["export", served["vectors"], "--out", tmp_path / "x.onnx"], capsys)
    assert_usage_error(code, err, "export", str(served["vectors"]), "not a valid hashplug model file", "single numpy array", "--out model.npz")
    assert "context manager" not in err


def test_export_of_a_real_model_still_works(served, tmp_path, capsys):
    code, out, err = run_cli(["export", served["model"], "--out", tmp_path / "x.onnx"], capsys)
    assert code == 0, err
    assert (tmp_path / "x.onnx").is_file() and "exported LSH" in out


def test_train_a_structured_encoder_points_to_python_and_its_bench(vectors_file, tmp_path, capsys):
    out = tmp_path / "m.npz"
    code, _, err = run_cli(["train", "neurohash", "--data", vectors_file, "--k", "8", "--out", out], capsys)
    assert_usage_error(code, err, "train", "several named inputs", "neurohash-ablation")
    assert not out.exists()
