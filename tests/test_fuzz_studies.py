"""Bad input to the study commands and to `evaluate --plan`, each refused up front with one
`seedopt: error:` line and exit code 2: batch tasks (keys, configs, variants, methods),
an unreachable Ray cluster, Optuna storages, pre-plan metrics files of another shape. None
of these tests starts Ray."""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from study_cases import tiny_config
from test_cli import one_line_error, seedopt

from seedopt.cli import main
from seedopt.errors import SeedoptError
from seedopt.studies import make_tasks
from seedopt.studies.tune import check_sqlite_storage

ERROR = "seedopt: error: "


def edited_config(folder: Path, stem: str, **keys: object) -> Path:
    """The tiny case in ``folder/stem.yaml`` with top-level ``keys`` replaced."""
    path = tiny_config(folder, stem)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **keys}))
    return path


def cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``seedopt ARGS`` in this process; assert exit 2 and one error line; return it."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = [
        ln for ln in capsys.readouterr().err.splitlines() if ln and not ln.startswith("backend:")
    ]
    assert len(lines) == 1 and lines[0].startswith(ERROR), lines
    return lines[0]


# --- batch: every task checked before any runs -----------------------------------------


@pytest.mark.parametrize(
    ("names", "keys"),
    [
        (("a b", "a-b"), "the same key, 'a-b__base'"),
        (("a/b", "a:b"), "the same key, 'a-b__base'"),
        (("Vert", "vert"), "keys equal but for case, 'Vert__base' and 'vert__base'"),
    ],
)
def test_two_cases_with_one_task_key_are_refused_naming_both_configs(
    tmp_path: Path, capsys, names, keys
) -> None:
    configs = [edited_config(tmp_path, f"c{i}", name=n) for i, n in enumerate(names)]
    out = tmp_path / "results.h5"
    err = cli_error(["batch", *map(str, configs), "--out", str(out)], capsys)
    assert str(configs[0]) in err and str(configs[1]) in err and keys in err
    assert not list(tmp_path.glob("results.h5*"))  # refused before anything was written


def test_a_case_and_a_variant_that_join_into_another_tasks_key_are_refused(tmp_path: Path) -> None:
    configs = [tiny_config(tmp_path, "x__y"), tiny_config(tmp_path, "x")]
    variants = tmp_path / "variants.yaml"
    variants.write_text(yaml.safe_dump({"z": {}, "y__z": {}}))
    with pytest.raises(SeedoptError, match="the same key, 'x__y__z'"):
        make_tasks(configs, variants)


@given(names=st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=3))
@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_task_keys_are_unique_file_names_or_the_batch_is_refused(tmp_path: Path, names) -> None:
    configs = [edited_config(tmp_path, f"case{i}", name=n) for i, n in enumerate(names)]
    try:
        tasks = make_tasks(configs)
    except SeedoptError as exc:
        assert "map to" in str(exc)
        return
    keys = [t.key for t in tasks]
    assert len({k.casefold() for k in keys}) == len(keys)
    for key in keys:
        assert key and not key.startswith(".") and "/" not in key and "\0" not in key


def test_a_hidden_name_does_not_give_a_hidden_part_file(tmp_path: Path) -> None:
    (task,) = make_tasks([edited_config(tmp_path, "c", name=".x")])
    assert task.key == "-x__base"


def test_a_key_too_long_for_a_file_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SeedoptError, match="longer than 200 bytes"):
        make_tasks([edited_config(tmp_path, "c", name="n" * 240)])


def test_every_bad_task_is_reported_at_once_before_any_runs(tmp_path: Path, capsys) -> None:
    good = tiny_config(tmp_path, "good")
    wrong_method = edited_config(tmp_path, "wm", optimizer={"method": "anneel"})
    variants = tmp_path / "variants.yaml"
    variants.write_text(
        yaml.safe_dump({"base": {}, "badseed": {"optimizer": {"seed": "x"}}, "ok": {}})
    )
    out = tmp_path / "results.h5"
    err = cli_error(
        [
            "batch",
            str(good),
            str(tmp_path / "missing.yaml"),
            str(wrong_method),
            "--variants",
            str(variants),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert re.match(f"{ERROR}[0-9]+ problems, no task run: ", err)
    assert f"cannot read config {tmp_path / 'missing.yaml'}" in err
    assert f"{good}, variant badseed ({variants}): optimizer.seed:" in err
    assert f"{wrong_method}" in err and "optimizer.method: unknown optimizer 'anneel'" in err
    assert not list(tmp_path.glob("results.h5*"))


def test_each_task_holds_its_validated_spec_with_method_and_seed_applied(tmp_path: Path) -> None:
    """What a task runs is a PlanSpec validated with its method and seed in it, so the
    config model's checks of the method's options apply to every task before the batch
    starts."""
    config = edited_config(tmp_path, "a", optimizer={"method": "anneal"})  # no options
    tasks = make_tasks([config], methods=("anneal", "clinical"), seed=7)
    assert [t.key for t in tasks] == ["a__base__anneal", "a__base__clinical"]
    assert [t.spec.optimizer.method for t in tasks] == ["anneal", "clinical"]
    assert [t.method for t in tasks] == ["anneal", "clinical"]
    assert [t.spec.optimizer.seed for t in tasks] == [7, 7] == [t.seed for t in tasks]
    assert tasks[0].digest != tasks[1].digest


def test_options_meant_for_another_method_are_refused_before_any_task(
    tmp_path: Path, capsys
) -> None:
    config = tiny_config(tmp_path, "a")  # annealing options: chains, iterations
    variants = tmp_path / "variants.yaml"
    variants.write_text(
        yaml.safe_dump({"ok": {}, "nochains": {"optimizer": {"options": {"chains": 0}}}})
    )
    out = tmp_path / "r.h5"
    args = ["batch", str(config), "--variants", str(variants), "--out", str(out)]
    err = cli_error([*args, "--method", "anneal", "--method", "lp"], capsys)
    assert f"{config}, variant ok ({variants}), method lp: optimizer.options.chains: unknown" in err
    assert f"{config}, variant nochains ({variants}): optimizer.options.chains:" in err
    assert not list(tmp_path.glob("r.h5*"))


@pytest.mark.parametrize(
    ("methods", "pattern"),
    [
        (["--method", "anneal", "--method", "simplex"], "--method simplex: unknown optimizer"),
        (["--method", "lp", "--method", "lp"], "--method lp given more than once"),
    ],
)
def test_bad_methods_are_one_line(tmp_path: Path, capsys, methods, pattern) -> None:
    config = tiny_config(tmp_path, "a")
    err = cli_error(["batch", str(config), *methods, "--out", str(tmp_path / "r.h5")], capsys)
    assert err.startswith(f"{ERROR}{pattern}")  # said once, not once per task


def test_a_folder_as_out_is_one_line(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, "a")
    (tmp_path / "r.h5").mkdir()
    assert "r.h5" in cli_error(["batch", str(config), "--out", str(tmp_path / "r.h5")], capsys)


def test_an_out_under_a_regular_file_is_one_line(tmp_path: Path) -> None:
    from seedopt.studies import run_batch

    (tmp_path / "file").write_text("")
    tasks = make_tasks([tiny_config(tmp_path, "a")])
    with pytest.raises(SeedoptError, match="cannot create"):
        run_batch(tasks, tmp_path / "file" / "r.h5", progress=False)


# --- batch --address: bounded connection time ------------------------------------------


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections and never answers (a host that is not Ray)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_an_unreachable_cluster_fails_within_the_connect_timeout(
    tmp_path: Path, silent_listener
) -> None:
    config = tiny_config(tmp_path, "a")
    start = time.monotonic()
    r = seedopt(
        "batch",
        str(config),
        "--out",
        str(tmp_path / "r.h5"),
        "--address",
        silent_listener,
        "--connect-timeout-s",
        "3",
    )
    wall = time.monotonic() - start
    one_line_error(r, rf"cannot join the Ray cluster at {silent_listener}: no answer within 3 s")
    assert wall < 3 + 20  # the timeout, plus starting the command and the probe (was: > 9 min)
    assert "WARNING" not in r.stderr and "rpc_client" not in r.stderr  # Ray's noise stays out


def test_workers_with_an_address_is_refused(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, "a")
    args = ["batch", str(config), "--out", str(tmp_path / "r.h5"), "--address", "h:1"]
    assert "--workers sizes the local Ray" in cli_error([*args, "--workers", "2"], capsys)


def test_connect_timeout_must_be_positive(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, "a")
    args = ["batch", str(config), "--out", str(tmp_path / "r.h5"), "--connect-timeout-s", "0"]
    assert "--connect-timeout-s" in cli_error(args, capsys)


# --- tune: Optuna storages -------------------------------------------------------------


def other_schema_db(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE studies (x INTEGER)")
        db.execute("CREATE TABLE patients (name TEXT)")
    return path


def garbled_optuna_db(path: Path) -> Path:
    """An Optuna study store with its pages after the first overwritten."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=f"sqlite:///{path}", study_name="s")
    data = bytearray(path.read_bytes())
    data[4096:] = bytes((7 * i) % 251 for i in range(len(data) - 4096))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: p.write_bytes(bytes(range(256)) * 16), "is not an SQLite database"),
        (lambda p: p.write_text("name: not a database\n"), "is not an SQLite database"),
        (other_schema_db, r"of another schema \(tables patients, studies\)"),
        (garbled_optuna_db, "is a damaged SQLite database"),
        (lambda p: p.mkdir(), "is a folder, not a database file"),
    ],
    ids=["random-bytes", "text", "other-schema", "garbled", "folder"],
)
def test_a_corrupt_study_database_is_one_line_and_left_untouched(
    tmp_path: Path, capsys, make, pattern
) -> None:
    config = tiny_config(tmp_path, "a")
    out = tmp_path / "tune"
    out.mkdir()
    make(out / "tune.db")
    before = (out / "tune.db").read_bytes() if (out / "tune.db").is_file() else None
    err = cli_error(["tune", str(config), "--out", str(out), "--backend", "cpu"], capsys)
    assert f"Optuna storage sqlite:///{(out / 'tune.db').resolve()}" in err
    assert re.search(pattern, err), err
    if before is not None:
        assert (out / "tune.db").read_bytes() == before
    assert not (out / "best.json").exists()


@pytest.mark.parametrize(
    ("storage", "pattern"),
    [
        ("sqlite:////no/such/folder/t.db", "the folder /no/such/folder does not exist"),
        ("nosuchdb://host/db", "cannot open study 'seedopt-plan': Can't load plugin"),
        ("postgresql://u@127.0.0.1:1:2/db", "not a storage URL"),
        ("postgresql://u@127.0.0.1:1/db", "cannot open study"),
    ],
)
def test_a_bad_storage_url_is_one_line(tmp_path: Path, capsys, storage, pattern) -> None:
    config = tiny_config(tmp_path, "a")
    err = cli_error(
        ["tune", str(config), "--out", str(tmp_path / "o"), "--storage", storage], capsys
    )
    assert f"Optuna storage {storage}: " in err and pattern in err


@given(data=st.binary(min_size=1, max_size=200))
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_file_that_is_not_an_optuna_database_is_refused(tmp_path: Path, data) -> None:
    path = tmp_path / "fuzz.db"
    path.write_bytes(b"SQLite format 3\x00" + data if data[0] % 2 else data)
    with pytest.raises(SeedoptError, match=r"not an SQLite database|damaged|another schema"):
        check_sqlite_storage(f"sqlite:///{path}")


def test_a_study_of_other_objectives_is_one_line(tmp_path: Path, capsys) -> None:
    import optuna

    config = tiny_config(tmp_path, "a")
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=storage, study_name="seedopt-plan", directions=["maximize"] * 2)
    err = cli_error(["tune", str(config), "--out", str(tmp_path), "--storage", storage], capsys)
    assert "study 'seedopt-plan' has other objectives (maximize, maximize)" in err


# --- evaluate --plan: reading the pre-plan's metrics.json ------------------------------
# (its shape is PlanMetrics.from_json's: tests/test_plan_metrics.py)


@pytest.fixture
def implant(tmp_path: Path) -> tuple[Path, Path]:
    """The tiny case and a seeds CSV of two seeds in its target."""
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("x_mm,y_mm,z_mm\n0,-8,-2\n0,-8,3\n")
    return tiny_config(tmp_path, "case"), seeds


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"\xff\xfe{}", "not valid JSON .*utf-8"),
        (b"[" * 100_000, "not valid JSON .*recursion"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "expected a mapping, got list"),
    ],
    ids=["not-utf8", "deeply-nested", "empty", "a-list"],
)
def test_evaluate_with_a_bad_pre_plan_is_one_line_before_any_dose(
    tmp_path: Path, capsys, implant, content, pattern
) -> None:
    config, seeds = implant
    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "metrics.json").write_bytes(content)
    out = tmp_path / "post"
    args = ["evaluate", str(config), "--seeds", str(seeds), "--out", str(out), "--plan", str(pre)]
    err = cli_error([*args, "--backend", "cpu"], capsys)
    assert f"--plan {pre / 'metrics.json'}: " in err and re.search(pattern, err), err
    assert not out.exists()


def test_evaluate_with_no_pre_plan_metrics_is_one_line(tmp_path: Path, capsys, implant) -> None:
    config, seeds = implant
    args = ["evaluate", str(config), "--seeds", str(seeds), "--out", str(tmp_path / "o")]
    err = cli_error([*args, "--plan", str(tmp_path)], capsys)
    assert f"--plan {tmp_path / 'metrics.json'}: cannot read it: No such file" in err
