"""Print the Markdown rows of a Table 2/3 repeat from the outputs of its commands.

    python docs/experiments/table2_rows.py --reference runs/t3/p250 --runs runs/t3/ps250 \
        --names VGG-16P VGG-16PS --comparisons runs/t3/ps250_vs_p250.json --size 250

Reads, for every run, ``RUN/eval_oof/metrics.json`` (pooled AUC with its cluster-bootstrap
interval), ``operating_points_<run>.json`` beside the run folder (sensitivity and specificity at
the stored thresholds, pooled and within DermNet NZ; raw and Platt-scaled calibration error, both
written by ``crops/operating_points.py``), and the paired differences against the reference in
every ``--comparisons`` file (written by ``unseen/compare_cv.py``). Writing the rows from the files
keeps the page's table equal to what the commands above it produced.
"""
import argparse
import json
from pathlib import Path

from skin_cnn.core.tasks import TASK_NAMES


def auc_cell(run):
    """Pooled out-of-fold AUC and its interval of every task, e.g. ``0.771 (0.720–0.818)``."""
    metrics = json.loads((Path(run) / "eval_oof" / "metrics.json").read_text())["tasks"]
    cells = []
    for task in TASK_NAMES:
        auc = metrics[task]["auc"]
        low, high = auc["ci"]
        cells.append(f"{auc['value']:.3f} ({low:.3f}–{high:.3f})")
    return cells


def operating_points(run):
    """The ``operating_points_<run>.json`` that ``crops/operating_points.py`` wrote for RUN."""
    run = Path(run)
    return json.loads((run.parent / f"operating_points_{run.name}.json").read_text())


def sens_spec_cell(points, task):
    """Sensitivity / specificity in %, pooled; the same within DermNet NZ."""
    parts = []
    for where in ("pooled", "DermNet NZ"):
        at = points[where][task]["at_stored"]
        parts.append(f"{100 * at['sensitivity'][0]:.1f} / {100 * at['specificity'][0]:.1f}")
    return "; ".join(parts)


def signed(value):
    """A difference with its sign, three decimals (``+0.007``, ``−0.022``)."""
    return f"{value:+.3f}".replace("-", "−")


def difference_cell(comparison, task, where):
    """The paired difference and its interval, e.g. ``+0.007 (−0.028 to +0.045)``."""
    entry = comparison[task][f"difference_{where}"]
    low, high = entry["ci"]
    return f"{signed(entry['difference'])} ({signed(low)} to {signed(high)})"


def rows(reference, runs, names, comparisons, size):
    """The table's lines: AUC, paired differences, operating points and calibration of every run."""
    runs = [reference, *runs]
    lines = [f"| model, {size}² | " + " | ".join(t.replace("_vs_", " vs ").replace("ctcl", "CTCL")
                                                  for t in TASK_NAMES) + " |",
             "|---|" + "---|" * len(TASK_NAMES)]
    for run, name in zip(runs, names):
        lines.append(f"| {name}: AUC | " + " | ".join(auc_cell(run)) + " |")
    loaded = [json.loads(Path(path).read_text()) for path in comparisons]
    for where, label in (("pooled", "pooled"), ("DermNet NZ", "DermNet NZ")):
        for name, comparison in zip(names[1:], loaded):
            short = name.replace("VGG-16", "")
            lines.append(f"| {short} − {names[0].replace('VGG-16', '')}, {label} | "
                         + " | ".join(difference_cell(comparison, t, where) for t in TASK_NAMES) + " |")
    for run, name in zip(runs, names):
        points = operating_points(run)
        lines.append(f"| {name}: sensitivity / specificity; DermNet NZ | "
                     + " | ".join(sens_spec_cell(points, t) for t in TASK_NAMES) + " |")
    for run, name in zip(runs, names):
        points = operating_points(run)["pooled"]
        lines.append(f"| {name}: ECE (Platt-scaled on out-of-fold scores) | "
                     + " | ".join(f"{points[t]['ece']:.3f} ({points[t]['ece_sigmoid']:.3f})" for t in TASK_NAMES)
                     + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="the run the others are compared with (VGG-16P)")
    parser.add_argument("--runs", nargs="*", default=[], help="the other cross-validation folders")
    parser.add_argument("--names", nargs="+", required=True, help="a row name per run, reference first")
    parser.add_argument("--comparisons", nargs="*", default=[], help="compare_cv.py output per other run")
    parser.add_argument("--size", required=True, help="the input size, for the header")
    args = parser.parse_args(argv)
    if len(args.names) != 1 + len(args.runs) or len(args.comparisons) != len(args.runs):
        parser.error("give one name per run (reference first) and one comparison per run after the reference")
    print("\n".join(rows(args.reference, args.runs, args.names, args.comparisons, args.size)))


if __name__ == "__main__":
    main()
