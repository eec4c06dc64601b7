"""Mutation testing of the numerical modules on a seeded sample of mutants (`make mutate`; not in CI).

mutmut (>= 3.8) is the mutation engine: it copies the package into mutants/, where every function of the
modules named by `only_mutate` in setup.cfg's [mutmut] section (maps/, evaluation/, support/, stats.py)
carries all its mutants behind a switch. This script

1. has mutmut write mutants/ (only files whose source changed are mutated again),
2. lists every mutant and draws a seeded sample of N of them (uniform, without replacement),
3. runs `mutmut run NAMES...` on the sample: mutmut first records which tests call which function (one run of
   the test files in `pytest_add_cli_args_test_selection`, cached in mutants/mutmut-stats.json), then tests each
   mutant with only the tests that reach its function, under a CPU-time limit,
4. reads the verdicts back and writes a summary (per module: killed, survived, timeout, no tests; every
   survivor with its diff, marked when tools/mutation_accepted.txt accepts it) to benchmarks/results/mutation.json.

Score = (killed + timeout) / mutants run; a mutant no selected test reaches ("no tests") counts as not killed.
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCEPTED = ROOT / "tools" / "mutation_accepted.txt"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "mutation.json"


def _mutmut():
    try:
        import mutmut  # noqa: F401
    except ImportError:
        sys.exit("mutmut is not installed: pip install -e '.[mutate]'")
    from mutmut import __main__ as engine  # noqa: F401  (sets the multiprocessing start method mutmut needs)
    return engine


def sync_unmutated(src_root: Path) -> None:
    """mutmut copies files that it does not mutate only once; copy again those changed since."""
    from mutmut.configuration import config

    for path in src_root.rglob("*.py"):
        rel = path.relative_to(ROOT)
        target = ROOT / "mutants" / rel
        if config().should_mutate(rel):
            continue
        if not target.exists() or not filecmp.cmp(path, target, shallow=False):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def drop_stale_copies(folder: str = "tests") -> None:
    """mutmut copies ``folder`` into mutants/ but never deletes there: remove the copies of files since moved or
    deleted (a stale test module beside its moved namesake breaks collection, and so the stats run)."""
    copy_root = ROOT / "mutants" / folder
    for path in sorted(copy_root.rglob("*"), reverse=True) if copy_root.exists() else []:
        source = ROOT / path.relative_to(ROOT / "mutants")
        if path.is_file() and not source.exists():
            path.unlink()
        elif path.is_dir() and not source.exists() and not any(path.iterdir()):
            path.rmdir()


def generate() -> None:
    engine = _mutmut()
    from mutmut.configuration import config
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir

    set_mutant_under_test("mutant_generation")
    (ROOT / "mutants").mkdir(exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    drop_stale_copies()
    for source in config().source_paths:
        sync_unmutated(ROOT / source)
    stats = engine.create_mutants(1)
    print(f"mutants/: {stats.mutated} files mutated, {stats.unmodified} unchanged, {stats.ignored} copied")


def meta_files() -> list[Path]:
    return sorted((ROOT / "mutants").rglob("*.py.meta"))


def all_mutants() -> dict[str, str]:
    """Mutant name -> source file (relative to the repository)."""
    out = {}
    for meta in meta_files():
        source = str(meta.relative_to(ROOT / "mutants"))[: -len(".meta")]
        for name in json.loads(meta.read_text())["exit_code_by_key"]:
            out[name] = source
    return out


def sample_order(names, seed: int) -> list[str]:
    """Mutants ranked by a seeded hash of their names: the sample of N is the first N. A mutant keeps its rank
    when other files change (a shuffle of the whole list would draw a new sample after every edit), and a
    smaller N tests the first N of a larger one's sample."""
    return sorted(names, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())


def reset(names: set[str]) -> None:
    """Forget earlier verdicts of the sampled mutants, so that a run that stops early reports them unchecked."""
    for meta in meta_files():
        data = json.loads(meta.read_text())
        hit = names & data["exit_code_by_key"].keys()
        if hit:
            for name in hit:
                data["exit_code_by_key"][name] = None
                data["durations_by_key"].pop(name, None)
            meta.write_text(json.dumps(data, indent=4))


def not_killed(sample) -> set[str]:
    from mutmut.stats import status_by_exit_code

    out = set()
    for meta in meta_files():
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if name in sample and status_by_exit_code[code] not in ("killed", "timeout"):
                out.add(name)
    return out


def unchecked(sample) -> set[str]:
    """Sampled mutants without a verdict (never run, or reset by a run that stopped before reaching them)."""
    out = set(sample)
    for meta in meta_files():
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if name in out and code is not None:
                out.discard(name)
    return out


def accepted() -> dict[str, str]:
    out = {}
    if ACCEPTED.exists():
        for line in ACCEPTED.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, reason = line.partition(" ")
                out[name] = reason.strip()
    return out


def summarize(sample: dict[str, str], seed: int, population: int, wall_s: float) -> dict:
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    codes = {}
    for meta in meta_files():
        data = json.loads(meta.read_text())
        for name in sample.keys() & data["exit_code_by_key"].keys():
            codes[name] = data["exit_code_by_key"][name]
    ok = accepted()
    per_module: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, source in sorted(sample.items()):
        status = status_by_exit_code[codes.get(name)]
        per_module[source][status] += 1
        per_module[source]["total"] += 1
        if status in ("survived", "no tests", "suspicious", "not checked", "segfault"):
            try:
                diff = get_diff_for_mutant(name, path=source)
            except Exception as exc:  # the diff is a convenience; the verdict stands without it
                diff = f"(no diff: {exc})"
            survivors.append({"mutant": name, "status": status, "accepted": name in ok,
                              "reason": ok.get(name, ""), "diff": diff})
    total = Counter()
    for counts in per_module.values():
        total.update(counts)
    caught = total["killed"] + total["timeout"]
    return {
        "tool": "mutmut " + _version(),
        "seed": seed,
        "sampled": len(sample),
        "population": population,
        "score": round(caught / max(1, total["total"]), 4),
        "score_counting_accepted": round((caught + sum(s["accepted"] for s in survivors))
                                         / max(1, total["total"]), 4),
        "totals": dict(total),
        "per_module": {m: dict(c) for m, c in sorted(per_module.items())},
        "wall_s": round(wall_s, 1),
        "survivors": survivors,
    }


def run_mutmut(cmd: list[str], env: dict) -> float | None:
    """Run mutmut, echoing its output; return its rate (mutants per second of the mutation phase)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail = b""
    while chunk := proc.stdout.read1(4096):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        tail = (tail + chunk)[-20000:]
    proc.wait()
    found = re.findall(rb"([0-9.]+) mutations/second", tail)
    return float(found[-1]) if found else None


def _commit() -> str:
    """The commit whose sources were mutated (with "+changes" when the work tree differs from it)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "latentmap", "tests"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def _version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", type=int, default=400, help="sample size (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="mutants tested at once (mutmut --max-children)")
    p.add_argument("--only", default="", help="restrict the population to mutants whose name starts with this")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--fresh", action="store_true", help="delete mutants/ first (new mutants and test stats)")
    p.add_argument("--summary-only", action="store_true", help="summarize the last run of this sample again")
    p.add_argument("--resume", action="store_true",
                   help="test only the mutants of this sample that have no verdict yet (a run that was stopped "
                        "goes on where it stopped; verdicts are kept while the mutated sources are unchanged)")
    p.add_argument("--retest", action="store_true",
                   help="test again only the mutants of this sample that the last run did not kill and that are not "
                        "accepted (after new tests)")
    args = p.parse_args(argv)
    os.chdir(ROOT)
    if args.fresh and (ROOT / "mutants").exists():
        shutil.rmtree(ROOT / "mutants")
    if not args.summary_only:
        generate()
    population = {n: s for n, s in all_mutants().items() if n.startswith(args.only)}
    names = sorted(population)
    order = sample_order(names, args.seed)
    sample = {n: population[n] for n in order[: args.mutants]}
    print(f"{len(sample)} of {len(names)} mutants (seed {args.seed})")
    start = time.monotonic()
    rate, todo = None, set()
    if not args.summary_only:
        if args.retest:
            todo = not_killed(sample) - accepted().keys()
        elif args.resume:
            todo = unchecked(sample)
        else:
            todo = set(sample)
        if not args.resume:
            reset(todo)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        cmd = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(args.jobs), *sorted(todo)]
        print(f"testing {len(todo)} of them")
        rate = run_mutmut(cmd, env) if todo else None
    wall = time.monotonic() - start
    summary = summarize(sample, args.seed, len(names), wall)
    # wall time over mutants tested, set-up (mutant generation, test-to-function stats, clean run) included;
    # mutmut's own rate covers the mutation phase only and is printed to two decimals
    summary["seconds_per_mutant"] = round(wall / len(todo), 1) if todo else None
    summary["mutation_phase_mutants_per_s"] = rate
    summary["commit"] = _commit()
    summary["tested"] = len(todo)
    last = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.resume and last.get("seed") == args.seed:
        # one sample tested in several sittings: wall time and mutants tested add up
        summary["wall_s"] = round(last.get("wall_s", 0) + wall, 1)
        summary["tested"] = last.get("tested", 0) + len(todo)
        summary["seconds_per_mutant"] = round(summary["wall_s"] / max(1, summary["tested"]), 1)
    elif args.summary_only or args.retest:
        for key in ("wall_s", "tested", "seconds_per_mutant", "mutation_phase_mutants_per_s"):
            summary[key] = last.get(key)
        summary["retested"] = sorted(set(last.get("retested", [])) | todo)  # tested again after new tests
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"\n{'module':45s} {'run':>5s} {'killed':>7s} {'timeout':>8s} {'survived':>9s} {'no tests':>9s}")
    for module, c in summary["per_module"].items():
        print(f"{module:45s} {c['total']:5d} {c.get('killed', 0):7d} {c.get('timeout', 0):8d} "
              f"{c.get('survived', 0):9d} {c.get('no tests', 0):9d}")
    t = summary["totals"]
    print(f"score {summary['score']:.1%}: {t.get('killed', 0) + t.get('timeout', 0)} of {t['total']} mutants "
          f"killed (timeouts included); {sum(s['accepted'] for s in summary['survivors'])} survivors accepted "
          f"(tools/mutation_accepted.txt); summary in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
