"""``skin-cnn manifest check``: list every problem of a manifest by row before training on it."""
from __future__ import annotations

import click


@click.group(name="manifest")
def command():
    """Check a manifest CSV and report every problem by row."""


@command.command(name="check", short_help="Validate every row; exit status 1 on errors.")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--icd10-map", type=click.Path(dir_okay=False), default=None,
              help="ICD-10 → category CSV (code, category) for an icd10 column.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for manifest_report.csv and manifest_report.json.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Report file (.csv); the JSON goes beside it.")
@click.option("--images/--no-images", "check_images", default=True, show_default=True,
              help="Decode and hash every image (off: only check that files exist).")
@click.option("--max-lines", default=40, show_default=True, type=int,
              help="Problem lines shown on screen; the report file has all.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def check(manifest, icd10_map, out_dir, report_path, check_images, max_lines, quiet):
    """Validate MANIFEST: files exist and decode, labels are known, no duplicates or conflicts.

    Exit status 1 when there are errors, 0 when there are only warnings (empty patient ids,
    for example). With -o/--report it also writes the flow record of the check beside the report
    (manifest_report.flow.json: the manifest's images and patients, then those without errors and
    the excluded rows by reason), the first steps of the STARD flow diagram.
    """
    from skin_cnn.cli.options import refuse_overwriting
    from skin_cnn.data.manifest import report_paths, validate_manifest
    from skin_cnn.data.split import check_flow_path, write_check_flow

    if out_dir and report_path:
        raise click.UsageError("give either -o/--out or --report, not both")
    if out_dir or report_path:
        csv_path, json_path = report_paths(out_dir or report_path)
        refuse_overwriting([manifest, icd10_map], (csv_path, json_path, check_flow_path(csv_path)),
                           "-o/--out" if out_dir else "--report")
    report = validate_manifest(manifest, icd10_map=icd10_map, check_images=check_images, progress=not quiet)
    click.echo(report.summary())
    if len(report.problems):
        click.echo(report.table(max_lines=max_lines))
    target = out_dir or report_path
    if target:
        csv_path, json_path = report.write(target)
        flow = write_check_flow(report, manifest, csv_path)
        click.echo(f"report written to {csv_path} and {json_path}; flow record {flow}")
    elif len(report.problems) > max_lines:
        click.echo("write the full report with -o FOLDER or --report FILE.csv")
    if not report.ok:
        raise SystemExit(1)
