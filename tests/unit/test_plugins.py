"""Suites from outside the package (issue 20): a suite file named on the command line, and an installed plug-in
package found through the ``aigc_bench.suites`` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from bench import registry
from bench.cli import main
from bench.errors import UsageError

SUITE_FILE = """
from bench.registry import register_suite
from bench.spec import Profile, Suite, Tier, VariantSpec, freeze

import {helper}  # a module beside the suite file: importable without PYTHONPATH


def build(width: int = 4):
    return {helper}.make(width)


@register_suite("{name}")
def suite():
    prof = Profile(name="quick", metrics=("params",), warmup_s=0.01, min_run_time_s=0.01)
    v = VariantSpec(family="lin", builder=f"{{__name__}}:build", model_args=freeze({{"width": 4}}))
    tier = Tier(name="t", target_params=36, tolerance=50.0, input_shape=(8,), variants=(v,))
    return Suite(name="{name}", description="from a file", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")
"""
HELPER = """
import torch

def make(width):
    return torch.nn.Linear(8, width)
"""


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch):
    """Whatever a test registers or loads is forgotten after it: suites, loaded files, sys.path, sys.modules."""
    registry.SUITES.names()
    monkeypatch.setattr(registry.SUITES, "_items", dict(registry.SUITES._items))
    monkeypatch.setattr(registry, "_loaded_files", {})
    monkeypatch.setattr(registry, "_suite_cache", {})
    monkeypatch.delenv(registry.SUITE_FILES_ENV, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("my_suite", "myhelper", "plugpkg", "_aigc_suite_", "broken", "nothing")):
            del sys.modules[name]


def _write_suite(folder: Path, name: str = "file-suite", stem: str = "my_suite") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"myhelper_{stem}.py").write_text(HELPER)
    path = folder / f"{stem}.py"
    path.write_text(SUITE_FILE.format(name=name, helper=f"myhelper_{stem}"))
    return path


def test_a_suite_file_registers_its_suite_and_workers_find_it(tmp_path: Path, clean_registry) -> None:
    import os

    path = _write_suite(tmp_path / "elsewhere")
    assert registry.suite_name(str(path)) == "file-suite"
    suite = registry.get_suite("file-suite")
    assert suite.tiers[0].variants[0].builder == "my_suite:build"
    # a worker process inherits the variable and sys.path: it imports the same file, and the builder resolves
    assert str(path.resolve()) in os.environ[registry.SUITE_FILES_ENV].split(os.pathsep)
    from bench.build import build_model

    assert build_model(suite.tiers[0].variants[0]).out_features == 4
    assert registry.load_suite_file(path) == ["file-suite"]  # twice: a no-op


@pytest.mark.slow
def test_run_a_suite_file_end_to_end(tmp_path: Path, clean_registry, monkeypatch, capsys) -> None:
    """``aigc-bench run path/to/suite.py``: a spawned worker rebuilds the model from the file's module."""
    path = _write_suite(tmp_path / "mine")
    out = tmp_path / "out"
    code = main(["run", str(path), "--device", "cpu", "--out", str(out), "--no-report", "--peak-budget", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (run,) = (out / "file-suite").glob("*.json")
    import json

    rec = json.loads(run.read_text())["records"][0]
    assert rec["status"] == "ok" and rec["metrics"]["params"] == 36
    assert "plan: 1 cells of file-suite" in captured.err and f"results: {out / 'file-suite'}/" in captured.err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("raise RuntimeError('no GPU here\\nsecond line')", "failed to import: RuntimeError: no GPU here second line"),
        ("import not_a_module_anywhere", "failed to import: ModuleNotFoundError: No module named"),
        ("x = (", "failed to import: SyntaxError"),
        ("X = 1", "registers no suite"),
    ],
)
def test_a_bad_suite_file_is_one_line_and_exit_2(tmp_path: Path, clean_registry, capsys, content, expected) -> None:
    path = tmp_path / "broken.py"
    path.write_text(content)
    assert main(["run", str(path), "--device", "cpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aigc-bench: error: suite file ") and expected in err, err
    assert not (tmp_path / "o").exists()


def test_a_missing_suite_file_is_one_line(tmp_path: Path, clean_registry, capsys) -> None:
    assert main(["list", str(tmp_path / "nope.py")]) == 2
    assert capsys.readouterr().err == f"aigc-bench: error: suite file {tmp_path / 'nope.py'}: no such file\n"
    with pytest.raises(UsageError, match="expected a Python file"):
        registry.load_suite_file(tmp_path)  # a folder


def test_a_file_of_two_suites_names_one(tmp_path: Path, clean_registry) -> None:
    path = tmp_path / "two.py"
    path.write_text(
        textwrap.dedent(
            """
            from bench.registry import register_suite
            register_suite("two-a")(lambda: None)
            register_suite("two-b")(lambda: None)
            """
        )
    )
    with pytest.raises(UsageError, match=r"registers 2 suites \(two-a, two-b\); name one: .*two.py:two-a"):
        registry.suite_name(str(path))
    assert registry.suite_name(f"{path}:two-b") == "two-b"


def _install_plugin(site: Path, value: str) -> None:
    """A package installed into ``site`` as pip would leave it: the module and a dist-info with entry points."""
    pkg = site / "plugpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "suites.py").write_text(SUITE_FILE.format(name="plugin-suite", helper="plugpkg.helper"))
    undecorated = SUITE_FILE.replace('@register_suite("{name}")\n', "")  # a plain factory: the entry point names it
    (pkg / "factory.py").write_text(undecorated.format(name="plugin-suite", helper="plugpkg.helper"))
    (pkg / "helper.py").write_text(HELPER)
    info = site / "plugpkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugpkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{value}\n")


@pytest.mark.parametrize(
    ("value", "module"),
    [("plugin = plugpkg.suites", "plugpkg.suites"), ("plugin-suite = plugpkg.factory:suite", "plugpkg.factory")],
)
def test_an_installed_plugin_registers_its_suites(tmp_path: Path, clean_registry, monkeypatch, value, module) -> None:
    """A module entry point registers by importing; a function entry point is the factory of its name."""
    _install_plugin(tmp_path / "site", value)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(registry.SUITES, "_loaded", False)  # as a fresh process: built-ins, then plug-ins
    assert "plugin-suite" in registry.list_suites()
    suite = registry.get_suite("plugin-suite")
    assert suite.name == "plugin-suite" and suite.tiers[0].variants[0].builder == f"{module}:build"


@pytest.mark.slow
def test_run_an_installed_plugin_suite_in_a_worker(tmp_path: Path, clean_registry, monkeypatch, capsys) -> None:
    """The spawned worker finds the plug-in package as the driver did (sys.path, entry points) and builds its model."""
    _install_plugin(tmp_path / "site", "plugin = plugpkg.suites")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(registry.SUITES, "_loaded", False)
    out = tmp_path / "out"
    code = main(["run", "plugin-suite", "--device", "cpu", "--out", str(out), "--no-report", "--peak-budget", "0"])
    assert code == 0, capsys.readouterr().err
    import json

    (run,) = (out / "plugin-suite").glob("*.json")
    assert json.loads(run.read_text())["records"][0]["metrics"]["params"] == 36


def test_a_broken_plugin_is_a_warning_not_the_end(tmp_path: Path, clean_registry, monkeypatch, caplog) -> None:
    _install_plugin(tmp_path / "site", "bad = plugpkg.missing_module")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(registry.SUITES, "_loaded", False)
    assert "cv-backbones" in registry.list_suites()
    assert any("suite plug-in 'bad'" in r.getMessage() and "ModuleNotFoundError" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_flops_counts_a_suite_files_variant(tmp_path: Path, clean_registry, capsys) -> None:
    """``aigc-bench flops path/to/suite.py/TIER/FAMILY`` (and ``file.py:NAME/...``), as ``run`` takes the file."""
    from bench.commands.flops import split_suite_ref

    path = _write_suite(tmp_path / "mine")
    assert main(["flops", f"{path}/t/lin", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["macs"] == 8 * 4  # Linear(8, 4), batch 1
    assert main(["flops", f"{path}:file-suite/t/lin", "--json"]) == 0
    assert split_suite_ref("cv-backbones/tiny/resnet") == ("cv-backbones", "tiny", "resnet")
    assert split_suite_ref("a/b/c/d") is None and split_suite_ref("x/y") is None
    capsys.readouterr()
    assert main(["flops", f"{tmp_path / 'nope.py'}/t/lin"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
