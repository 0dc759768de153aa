"""One candidate of the ~10 % completion regression at a time (issue 18): `completion_throughput` from a fixed tree,
with one variant of its database or ingestor, and the CPU per file of each process group.

The tree is a `git archive` (or worktree) of a commit; its own bench, packages and migrations run (this script
chdirs there, so `mes api`, `mes ingest` and `mes gateway` children import the tree too). A variant changes only
the bench's throw-away database right after the migrations, or the ingestor's settings; nothing in any checkout:

    base            as migrated
    no-notify       the statement-level NOTIFY triggers of 0011 disabled (ALTER TABLE … DISABLE TRIGGER)
    no-mark         the plain rollups' dirty-hour trigger on `measurements` (0010) disabled
    no-alert        the ingestor's alert watch idle in the window (MES_ALERT_POLL_S=60: one poll at start)
    no-refresh      no rollup refresher in the ingestor (MES_ROLLUP_REFRESH_S=0)
    no-runs-idx     `process_runs_started_idx` (0012) dropped: its predicate names `status`, so a completion's
                    status update of the run cannot be a HOT update and writes every index of `process_runs`
    no-new-idx      the indexes added since 2e67ea9 on the tables a completion writes dropped (0008 serial and
                    component-lot, 0013/0014 measurement indexes, the one above)
    all-off         every variant above at once

Several variants join with `+` (`no-notify+no-mark`). `--inprocess` runs `bench/completion_profile.py`'s workload
instead (this checkout's script on the tree: the batched store path alone, no MQTT, no gateways; batches of
`--size`) for the database variants: ingestor-side and PostgreSQL CPU per record with less noise.

Each run appends one JSON line (files/s, CPU ms per file of the ingestor, PostgreSQL, gateways, the API, other
processes) to `bench/results/regression_probe.jsonl` of this checkout; `--summary` prints the medians per (tree,
variant) from that file:

    MES_TEST_POSTGRES=plain nice -n 19 .venv/bin/python bench/regression_probe.py --tree /tmp/c18/307c501 \\
        --variant no-notify --files 2000
    .venv/bin/python bench/regression_probe.py --summary
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOTAL = ("ingestor", "postgres", "gateways", "mosquitto")  # the completion path's own processes
LOG = Path(__file__).resolve().parent / "results" / "regression_probe.jsonl"
NEW_INDEXES = (
    "process_runs_started_idx",
    "process_results_serial_idx",
    "measurements_serial_idx",
    "component_lots_component_lot_idx",
    "measurements_spc_idx",
    "measurements_characteristic_idx",
)
# SQL per variant, run as the schema owner right after the migrations; a DO block so a name absent from an older
# schema is skipped instead of failing the run.
NOTIFY_TRIGGERS = """
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tgrelid::regclass AS rel, tgname FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
           WHERE NOT g.tgisinternal AND p.prosrc LIKE '%mes_events_send%' LOOP
    EXECUTE format('ALTER TABLE %s DISABLE TRIGGER %I', t.rel, t.tgname);
  END LOOP;
END $$"""
MARK_TRIGGER = """
DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_trigger WHERE tgname = 'measurements_rollup_mark') THEN
    ALTER TABLE measurements DISABLE TRIGGER measurements_rollup_mark;
  END IF;
END $$"""


def drop_indexes(*names: str) -> str:
    return ";".join(f"DROP INDEX IF EXISTS {name}" for name in names)


DATABASE_VARIANTS: dict[str, list[str]] = {
    "no-notify": [NOTIFY_TRIGGERS],
    "no-mark": [MARK_TRIGGER],
    "no-runs-idx": [drop_indexes("process_runs_started_idx")],
    "no-new-idx": [drop_indexes(*NEW_INDEXES)],
}
ENV_VARIANTS: dict[str, dict[str, str]] = {
    "no-alert": {"MES_ALERT_POLL_S": "60"},
    "no-refresh": {"MES_ROLLUP_REFRESH_S": "0"},
}
ALL = ["no-notify", "no-mark", "no-alert", "no-refresh", "no-new-idx"]


def parts(variant: str) -> list[str]:
    names = [p for p in variant.split("+") if p and p != "base"]
    names = [n for name in names for n in (ALL if name == "all-off" else [name])]
    unknown = [n for n in names if n not in DATABASE_VARIANTS and n not in ENV_VARIANTS]
    if unknown:
        raise SystemExit(
            f"unknown variant {unknown}; known: base, all-off, {', '.join([*DATABASE_VARIANTS, *ENV_VARIANTS])}"
        )
    return names


def _plain_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _after_migrations(original: Callable[..., Any], statements: list[str], seen: dict[str, Any]) -> Callable[..., Any]:
    def upgrade(url: str, *args: Any, **kwargs: Any) -> Any:
        done = original(url, *args, **kwargs)
        import psycopg

        with psycopg.connect(_plain_url(url), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
            seen["disabled_triggers"] = [
                r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgenabled = 'D' ORDER BY 1")
            ]
            seen["new_indexes_present"] = [
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE indexname = ANY(%s)", (list(NEW_INDEXES),)
                )
            ]
        return done

    return upgrade


def per_file(cpu: dict[str, dict[str, float]], files: int) -> dict[str, float]:
    """CPU milliseconds per completed file of each process group in the measured window."""
    keys = {
        "ingestor": "ingestor",
        "postgres": "postgres",
        "gateways": "gateways",
        "api": "api",
        "mosquitto": "mosquitto",
        "other": "other processes",
    }
    return {k: round(1000 * cpu.get(g, {}).get("cpu_s", 0.0) / max(files, 1), 4) for k, g in keys.items()}


def run(tree: Path, variant: str, files: int, extra: list[str]) -> dict[str, Any]:
    names = parts(variant)
    statements = [s for n in names for s in DATABASE_VARIANTS.get(n, [])]
    for n in names:
        os.environ.update(ENV_VARIANTS.get(n, {}))
    os.chdir(tree)
    sys.path.insert(0, str(tree))  # the tree's packages win over this checkout's editable install
    from bench import _stack as stack_module
    from bench import completion_throughput as ct

    assert Path(ct.__file__).resolve().is_relative_to(tree.resolve()), ct.__file__
    seen: dict[str, Any] = {}
    stack_module.upgrade = _after_migrations(stack_module.upgrade, statements, seen)
    captured: dict[str, Any] = {}
    original_write = ct.write_results

    def write_results(name: str, data: dict[str, Any]) -> Path:
        captured.update(data)
        return original_write(name, data)

    ct.write_results = write_results
    sys.argv = ["completion_throughput", "--files", str(files), *extra]
    ct.main()
    completed = int(captured.get("completed", 0))
    return {
        "tree": tree.name,
        "variant": variant,
        "mode": "end-to-end",
        "files": files,
        "completed": completed,
        "errors": captured.get("errors"),
        "files_per_s": captured.get("files_per_s"),
        "elapsed_s": captured.get("elapsed_s"),
        "cpu_ms_per_file": per_file(captured.get("cpu", {}), completed),
        "database": os.environ.get("MES_TEST_POSTGRES", "auto"),
        "loadavg": os.getloadavg(),
        **seen,
    }


def run_inprocess(tree: Path, variant: str, messages: int, size: int) -> dict[str, Any]:
    names = parts(variant)
    if any(n in ENV_VARIANTS for n in names):
        raise SystemExit("the ingestor-process variants (no-alert, no-refresh) need the end-to-end run")
    statements = [s for n in names for s in DATABASE_VARIANTS.get(n, [])]
    os.chdir(tree)
    sys.path.insert(0, str(tree))
    import db.migrate as migrate  # the tree's: completion_profile.run imports `upgrade` from it at call time

    seen: dict[str, Any] = {}
    migrate.upgrade = _after_migrations(migrate.upgrade, statements, seen)
    spec = importlib.util.spec_from_file_location("probe_profile", Path(__file__).with_name("completion_profile.py"))
    assert spec is not None and spec.loader is not None
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    found = profile.run(tree, messages, 100, size)
    return {
        "tree": tree.name,
        "variant": variant,
        "mode": f"inprocess/{size}",
        "messages": messages,
        "msg_per_s": found["msg_per_s"],
        "cpu_ms_per_msg": found["cpu_ms_per_msg"],
        "pg_cpu_ms_per_msg": found["pg_cpu_ms_per_msg"],
        "function_calls": found["function_calls"],
        "statements": [
            {k: s[k] for k in ("calls", "exec_ms", "rows", "blks_hit", "query")} for s in found["statements"]
        ],
        "database": found["database"],
        "loadavg": os.getloadavg(),
        **seen,
    }


def run_idle(tree: Path, variant: str, seconds: float) -> dict[str, Any]:
    """CPU per second of each process group of the stack and 8 gateways with no files at all: what the periodic
    loops (pollers, rescans, state publishes, watches) take from the two cores whatever the throughput."""
    for n in parts(variant):
        os.environ.update(ENV_VARIANTS.get(n, {}))
    os.chdir(tree)
    sys.path.insert(0, str(tree))
    import time

    from bench import _stack as stack_module
    from bench import completion_throughput as ct

    with stack_module.bench_stack() as stack:
        ct.start_gateways(stack, 8, 0.2, {})
        time.sleep(5.0)  # past the start-up work (connects, first scans, the retained states)
        before = stack_module.cpu_seconds(stack.groups())
        time.sleep(seconds)
        used = stack_module.cpu_used(before, stack_module.cpu_seconds(stack.groups()), seconds)
    per_s = {k: round(1000 * v["cpu_s"] / seconds, 1) for k, v in used.items()}
    return {"tree": tree.name, "variant": variant, "mode": "idle", "seconds": seconds, "cpu_ms_per_s": per_s}


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run_ in runs:
        value: Any = run_
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def load_adjusted(rows: list[dict[str, Any]], group: str) -> dict[tuple[str, str], tuple[float, float]]:
    """Least squares over every end-to-end run: CPU ms/file of `group` = a term per (tree, variant) + a slope times
    the other processes' CPU ms/file (contention inflates CPU time too). Returns each term with its standard error
    as a difference from 307c501/base, so runs at different loads compare."""
    import numpy as np

    keys = sorted({(r["tree"], r["variant"]) for r in rows})
    base = keys.index(("307c501", "base")) if ("307c501", "base") in keys else 0
    x = np.array(
        [[float((r["tree"], r["variant"]) == k) for k in keys] + [r["cpu_ms_per_file"]["other"]] for r in rows]
    )
    cpu = [r["cpu_ms_per_file"] for r in rows]
    y = np.array([sum(c[k] for k in TOTAL) if group == "total" else c[group] for c in cpu])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = max(1, len(y) - len(coef))
    cov = float(((y - x @ coef) ** 2).sum() / dof) * np.linalg.pinv(x.T @ x)
    out = {}
    for i, key in enumerate(keys):
        var = cov[i, i] + cov[base, base] - 2 * cov[i, base]
        out[key] = (float(coef[i]), float(np.sqrt(max(var, 0.0))) if i != base else 0.0)
    return out


def summary() -> None:
    rows = [json.loads(line) for line in LOG.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    inprocess: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("mode", "end-to-end") == "end-to-end":
            groups.setdefault((row["tree"], row["variant"]), []).append(row)
        else:
            inprocess.setdefault((row["mode"], row["tree"], row["variant"]), []).append(row)
    print(f"{'tree':<9} {'variant':<22} {'n':>2} {'files/s':>8}", end=" ")
    print(f"{'ingestor':>9} {'postgres':>9} {'gateways':>9} {'other':>7}   (medians; CPU ms per file)")
    for (tree, variant), runs in groups.items():
        print(f"{tree:<9} {variant:<22} {len(runs):>2} {_median(runs, 'files_per_s'):>8.1f}", end=" ")
        cpu = [_median(runs, "cpu_ms_per_file", k) for k in ("ingestor", "postgres", "gateways", "other")]
        print(f"{cpu[0]:>9.3f} {cpu[1]:>9.3f} {cpu[2]:>9.3f} {cpu[3]:>7.3f}")
    ends = [r for r in rows if r.get("mode", "end-to-end") == "end-to-end"]
    if len(ends) > len(groups) + 1:
        print("\nload-adjusted CPU ms per file (term ± standard error of its difference from 307c501/base):")
        for group in ("ingestor", "postgres", "gateways", "total"):
            terms = load_adjusted(ends, group)
            ref = terms.get(("307c501", "base"), (1.0, 0.0))[0]
            cells = [
                f"{t[:3]}/{v}={c:.3f}({100 * (c - ref) / ref:+.0f}±{100 * e / ref:.0f}%)"
                for (t, v), (c, e) in terms.items()
            ]
            print(f"  {group:<9} " + "  ".join(cells))
    idle: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("mode") == "idle":
            idle.setdefault((row["tree"], row["variant"]), []).append(row)
    for (tree, variant), runs in idle.items():
        idle_cpu = {
            k: _median(runs, "cpu_ms_per_s", k) for k in ("gateways", "ingestor", "api", "postgres", "mosquitto")
        }
        print(f"idle {tree:<9} {variant:<12} n={len(runs)} CPU ms per second (medians): {idle_cpu}")
    inprocess = {k: v for k, v in inprocess.items() if k[0] != "idle"}
    if inprocess:
        print(f"\n{'mode':<14} {'tree':<9} {'variant':<22} {'n':>2} {'msg/s':>7}", end=" ")
        print(f"{'here':>7} {'postgres':>9}  (medians, then every run; CPU ms per message)")
    for (mode, tree, variant), runs in inprocess.items():
        here = sorted(r["cpu_ms_per_msg"] for r in runs)
        pg = sorted(r["pg_cpu_ms_per_msg"] for r in runs)
        print(f"{mode:<14} {tree:<9} {variant:<22} {len(runs):>2} {_median(runs, 'msg_per_s'):>7.0f}", end=" ")
        print(f"{statistics.median(here):>7.3f} {statistics.median(pg):>9.3f}  all: {here} / {pg}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, help="a git archive or worktree of the commit to run")
    parser.add_argument("--variant", default="base")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--inprocess", action="store_true", help="the batched store path alone (completion_profile)")
    parser.add_argument("--size", type=int, default=200, help="batch size of --inprocess")
    parser.add_argument("--idle", type=float, default=0.0, help="seconds of CPU per second with no files")
    parser.add_argument("--summary", action="store_true", help="print the medians of every run logged so far")
    parser.add_argument("extra", nargs="*", help="more completion_throughput options, after --")
    args = parser.parse_args()
    if args.summary:
        summary()
        return
    if args.tree is None:
        parser.error("--tree is required")
    parts(args.variant)  # fail before starting anything
    if args.idle > 0:
        result = run_idle(args.tree.resolve(), args.variant, args.idle)
    elif args.inprocess:
        result = run_inprocess(args.tree.resolve(), args.variant, args.files, args.size)
    else:
        result = run(args.tree.resolve(), args.variant, args.files, args.extra)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("a") as out:
        out.write(json.dumps(result) + "\n")
    print("probe:", json.dumps(result))


if __name__ == "__main__":
    main()
