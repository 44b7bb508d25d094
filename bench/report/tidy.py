"""The tidy CSV: every stored record (every run, duplicates kept) as one row, in a stable order.

Unlike the tables, which show the latest record of each cell, the CSV keeps all of them: it is the
data behind the report, for anyone who wants to plot or test it another way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.report.formatting import opt_int
from bench.report.frames import DEVICE_ORDER, KEY

if TYPE_CHECKING:
    import pandas as pd

#: tidy CSV columns, in this order when present (key and status always); then the metric catalogue's leading
#: columns (``tidy_metrics``), then the other metrics sorted by name, then ``TIDY_LAST``
TIDY_FIRST = KEY + ("status", "error")
#: metric columns the CSV has even when no cell measured them: the model's size
TIDY_ALWAYS = ("params", "macs")
TIDY_LAST = ("notes", "builder", "target_params", "achieved_params", "profile", "suite_hash", "run_id", "host")
#: never exported: raw sample lists (kept in the run file) and machine-local paths
_TIDY_DROP = ("path",)


def tidy_metrics() -> tuple[str, ...]:
    """The CSV's leading metric columns, in order: the catalogue's (``bench.catalogue.csv_columns``)."""
    from bench.catalogue import csv_columns

    return csv_columns()


def __getattr__(name: str) -> Any:  # ``TIDY_METRICS``, as this module had it: now read from the catalogue
    if name == "TIDY_METRICS":
        return tidy_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tidy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per stored cell (every run, duplicates kept) with a stable column order; raw samples dropped.

    ``input_shape`` is written as ``3x224x224``; rows are ordered by suite, dtype, mode, tier (suite order),
    family, model, device, batch size, sequence length and run.
    """
    import pandas as pd

    leading = tidy_metrics()
    if frame.empty:
        return pd.DataFrame(columns=list(TIDY_FIRST + TIDY_ALWAYS + TIDY_LAST))
    df = frame.copy()
    df["run_id"] = df["run_id"].fillna("").astype(str)
    df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    ranks: dict[Any, int] = {}
    for s, t in zip(df["suite"], df["tier"], strict=True):
        ranks.setdefault((s, t), len(ranks))
    df["_tier_rank"] = [ranks[(s, t)] for s, t in zip(df["suite"], df["tier"], strict=True)]
    df["_T"] = [-1 if opt_int(v) is None else opt_int(v) for v in df["seq_len"]]
    df["_dev"] = [DEVICE_ORDER.get(d, 9) for d in df["device"]]
    df = df.sort_values(["suite", "dtype", "mode", "_tier_rank", "family", "model", "_dev", "device", "batch_size", "_T", "run_id"],
                        kind="stable")  # fmt: skip
    df["input_shape"] = ["x".join(map(str, s or ())) for s in df["input_shape"]]
    df["seq_len"] = pd.array([opt_int(v) for v in df["seq_len"]], dtype="Int64")
    df["batch_size"] = df["batch_size"].astype("int64")
    skip = set(_TIDY_DROP) | {"execution"} | {c for c in df.columns if c.startswith("_") or c.endswith("_samples")}
    present = [c for c in df.columns if c not in skip]
    # ``execution`` only when some cell ran other than eager: eager-only runs keep the CSV they had before
    df["execution"] = [e if isinstance(e, str) and e else "eager" for e in df.get("execution", ["eager"] * len(df))]
    key = [c for c in TIDY_FIRST if c != "execution" or (df["execution"] != "eager").any()]
    first = key + [c for c in (*TIDY_ALWAYS, *leading) if c in present or c in TIDY_ALWAYS]
    first = list(dict.fromkeys(first))
    last = [c for c in TIDY_LAST if c in present or c == "run_id"]
    extra = sorted(c for c in present if c not in first and c not in last)
    for c in first + last:
        if c not in df.columns:
            df[c] = None
    return df[first + extra + last].reset_index(drop=True)
