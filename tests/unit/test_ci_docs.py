"""docs/ci.md's GitHub Actions example is valid YAML, wired as described, and calls the CLI correctly."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from bench.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def workflow() -> dict:
    (block,) = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return yaml.safe_load(block)


def cli_calls(wf: dict) -> list[list[str]]:
    """Every ``aigc-bench ...`` invocation at the start of a line of the workflow's ``run:`` steps, as argv (after ``aigc-bench``)."""
    calls = []
    for job in wf["jobs"].values():
        for step in job["steps"]:
            for line in str(step.get("run", "")).splitlines():
                m = re.match(r"\s*aigc-bench (.*?)(?:\s*(?:\|\||>|;|#|$))", line)
                if m:
                    # GitHub expressions (${{ matrix.shard }}) become a value they take in the matrix.
                    calls.append(shlex.split(m.group(1).replace("${{ matrix.shard }}", "2")))
    return calls


def test_workflow_shards_merges_compares_and_saves_the_baseline() -> None:
    wf = workflow()
    shard, compare = wf["jobs"]["shard"], wf["jobs"]["compare"]
    assert shard["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    assert compare["needs"] == "shard"
    commands = [c[0] for c in cli_calls(wf)]
    assert commands == ["run", "merge", "compare", "baseline"]


@pytest.mark.parametrize("argv", cli_calls(workflow()), ids=lambda a: a[0])
def test_every_cli_call_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)  # exits 2 on an unknown option or a bad value
    assert args.command == argv[0]
