"""``skin-cnn split``: validate a manifest, leave out broken rows, split the rest by patient."""
from __future__ import annotations

from pathlib import Path

import click

from skin_cnn.cli.options import gathered, icd10_map_option, quiet_option, refuse_overwriting, seed_option


def _split_settings(seed, fractions, group_near_duplicates, hash_distance):
    """The split's settings from the command's options, ``fractions`` checked first."""
    from skin_cnn.data.split import DEFAULT_HASH_DISTANCE, SplitSettings, check_fractions

    return SplitSettings(fractions=tuple(check_fractions(fractions)), seed=seed,
                         group_near_duplicates=group_near_duplicates,
                         hash_distance=DEFAULT_HASH_DISTANCE if hash_distance is None else hash_distance)


@click.command(name="split")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(),
              help="Split CSV to write (a folder gets split.csv).")
@seed_option
@click.option("--fractions", nargs=3, type=float, default=(0.8, 0.1, 0.1), show_default=True,
              help="Train, val and test share of patients.")
@click.option("--group-near-duplicates/--no-group-near-duplicates", default=True,
              help="Keep perceptually near-identical images in one split, joining the patients that "
              "share such a photo into one group [default: on; --no-group-near-duplicates when the "
              "patient ids are known to be complete].")
@click.option("--hash-distance", default=None, type=click.IntRange(0, 64),
              help="Largest pHash/dHash distance (bits) of a near-duplicate pair [default: 12].")
@icd10_map_option
@click.option("--allow-empty", is_flag=True,
              help="Write the split even when a split is empty or a disease is missing from val or "
              "test (with warnings); without it that is an error and nothing is written.")
@quiet_option()
@gathered("settings", _split_settings, ("seed", "fractions", "group_near_duplicates", "hash_distance"))
def command(manifest, out, icd10_map, allow_empty, quiet, settings):
    """Split MANIFEST 80/10/10 by patient, stratified by diagnosis.

    Every row is validated first; rows with errors (missing or unreadable file, unknown
    diagnosis, duplicate, patient with two diagnoses) are left out and listed, on screen and in
    SPLIT.flow.json beside the split, which holds the counts for a STARD flow diagram.
    Near-duplicate images (the same photo resized or re-saved, under any patient id) are grouped
    with their patients by default, so two patient ids sharing a photo land in one split. A split that
    comes out empty, or a disease missing from val or test, stops the command (exit code 1)
    unless --allow-empty is given.
    """
    from skin_cnn.evaluation import flow as flows
    from skin_cnn.data.manifest import validate_manifest
    from skin_cnn.data.split import flow_counts, has_patient_ids, split_problems, split_table, write_split

    out = Path(out)
    if out.is_dir() or out.suffix.lower() != ".csv":
        out = out / "split.csv"
    refuse_overwriting([manifest, icd10_map, flows.flow_path(manifest)],
                       [out, flows.flow_path(out)])
    report = validate_manifest(manifest, icd10_map=icd10_map, check_images=True, progress=not quiet)
    click.echo(report.summary())
    _echo_left_out(report, out)
    frame = report.clean_frame()
    if frame.empty:
        raise ValueError(f"{manifest}: no usable rows left to split; run `skin-cnn manifest check {manifest}`")

    split = _split_echoing_warnings(frame, settings, quiet)
    fractions = settings.fractions
    problems = split_problems(split, fractions)
    if problems and not allow_empty:
        click.echo(split_table(split).to_string())
        raise click.ClickException(
            f"{manifest}: {'; '.join(problems)}; nothing written (add patients, change --fractions, "
            "or pass --allow-empty)"
        )
    for problem in problems:
        click.secho(f"WARNING: {problem} (written anyway: --allow-empty)", fg="red", bold=True, err=True)
    if fractions[2] == 0:
        click.echo("warning: --fractions gives the test split 0: no patients are held out to test the "
                   "model on (evaluate them elsewhere, or use skin-cnn cv)", err=True)
    write_split(split, out)
    flow_path = flows.write_record(out, _record(manifest, flow_counts(report, split)))
    if not has_patient_ids(split):
        click.echo("no patient ids in the manifest: the split is by image (each image, or group of near "
                   "duplicates, is its own unit), so the counts below are images, not patients")
    click.echo(split_table(split).to_string())
    click.echo(f"wrote {out} and {flow_path}")


def _echo_left_out(report, out):
    """Say which rows validation leaves out of the split (the first 20, then how many more)."""
    if report.ok:
        return
    excluded = report.excluded()
    errors = report.problems[report.problems["severity"] == "error"]
    click.echo(f"left out of the split: {len(excluded) or report.n_rows} rows with errors")
    for _, p in errors.head(20).iterrows():
        click.echo(f"  row {p['row']}: {p['code']}: {p['message']}  {p['image_path']}")
    if len(errors) > 20:
        click.echo(f"  … {len(errors) - 20} more (all in {out.with_suffix('.flow.json')})")


def _split_echoing_warnings(frame, settings, quiet):
    """:func:`~skin_cnn.data.split.patient_split` of ``frame``, its warnings and near-duplicate
    groups said on screen."""
    import warnings

    from skin_cnn.data.split import patient_split

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = patient_split(frame, fractions=settings.fractions, seed=settings.seed,
                              group_near_duplicates=settings.group_near_duplicates,
                              hash_distance=settings.hash_distance, progress=not quiet)
    for note in caught:
        click.echo(f"warning: {note.message}")
    info = split.attrs["split_info"]
    if info["group_near_duplicates"]:
        click.echo(
            f"near duplicates: {info['near_duplicate_pairs']} pairs within {info['hash_distance']} bits, "
            f"{info['merged_groups']} groups joining more than one patient; {info['groups']} groups in all"
        )
    return split


def _record(manifest, counts):
    """The split's flow record: the manifest's own record (when an earlier step, such as
    ``cleanse apply``, wrote one beside it) followed by validation and split; else manifest,
    validation and split."""
    from skin_cnn.evaluation import flow as flows

    earlier = flows.read_record(manifest)
    if earlier is None or not earlier["steps"]:
        return counts
    return {"steps": [*earlier["steps"], *counts["steps"][1:]]}
