"""The command line: fast help, a version, one-line errors for user mistakes, tracebacks on --debug."""
import subprocess
import sys

import broken_files as bf
from click.testing import CliRunner

from skin_cnn import __version__
from skin_cnn.cli import COMMANDS, cli


def _run(*args):
    return CliRunner().invoke(cli, list(args))


def test_help_lists_every_available_command_with_its_summary():
    result = _run("--help")
    assert result.exit_code == 0
    listed = cli.list_commands(None)
    assert {"manifest", "split"} <= set(listed)
    for name in listed:
        line = next(line for line in result.output.splitlines() if line.strip().startswith(name + " "))
        assert COMMANDS[name][1][:30] in " ".join(result.output.split())
        assert line.strip() != name


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\nfrom skin_cnn.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "for name in ('manifest', 'split'):\n"
        "    try:\n        main([name, '--help'])\n    except SystemExit:\n        pass\n"
        "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'NO-TF')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "NO-TF"


def test_version():
    result = _run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_subcommand_help_texts():
    assert "check" in _run("manifest", "--help").output
    assert "--group-near-duplicates" in _run("split", "--help").output


def test_user_mistake_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "nope.csv"
    result = _run("manifest", "check", str(missing))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(error_lines) == 1 and str(missing) in error_lines[0] and "not found" in error_lines[0]


def test_debug_shows_the_traceback(tmp_path):
    result = _run("--debug", "manifest", "check", str(tmp_path / "nope.csv"))
    assert result.exit_code != 0
    assert isinstance(result.exception, FileNotFoundError)


def test_bad_option_value_is_a_usage_error(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image_path,patient_id,diagnosis\n")
    result = _run("split", str(path), "-o", str(tmp_path / "s.csv"), "--fractions", "0.5", "0.5", "0.5")
    assert result.exit_code != 0 and "fractions must sum to 1" in result.output and "Traceback" not in result.output


def _manifest(folder, rows):
    lines = ["image_path,patient_id,diagnosis"] + rows
    path = folder / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_check_exit_status_and_report(tmp_path):
    bf.valid_jpeg(tmp_path / "a.jpg")
    bf.text_as_jpg(tmp_path / "b.jpg")
    warnings_only = _manifest(tmp_path, ["a.jpg,,acne"])
    result = _run("manifest", "check", str(warnings_only), "--quiet")
    assert result.exit_code == 0
    assert "1 row, 1 image ok, 0 errors, 1 warning (empty_patient_id 1)" in result.output

    with_errors = _manifest(tmp_path, ["a.jpg,p1,acne", "b.jpg,p2,acne", "c.jpg,p3,gout"])
    result = _run("manifest", "check", str(with_errors), "--quiet", "--report", str(tmp_path / "r" / "report.csv"))
    assert result.exit_code == 1
    assert "3 errors" in result.output and "unreadable_image" in result.output and "unknown_diagnosis" in result.output
    assert (tmp_path / "r" / "report.csv").is_file() and (tmp_path / "r" / "report.json").is_file()


def test_manifest_check_on_public_derm(public_derm, tmp_path):
    result = _run("manifest", "check", str(public_derm / "manifest.csv"), "--quiet", "-o", str(tmp_path))
    assert result.exit_code == 0
    assert "942 rows, 942 images ok, 0 errors, 942 warnings (empty_patient_id 942)" in result.output
    assert len(result.output.splitlines()) < 15


def test_crop_exits_non_zero_when_no_image_could_be_read(tmp_path):
    # Two rows, both unreadable: there is nothing to crop, and a pipeline must stop here.
    bf.text_as_jpg(tmp_path / "a.jpg")
    bf.truncated_jpeg(tmp_path / "b.jpg", keep=0.05)
    (tmp_path / "m.csv").write_text("image_path,patient_id,diagnosis\na.jpg,p1,acne\nb.jpg,p2,rosacea\n")
    result = _run("crop", str(tmp_path / "m.csv"), "-o", str(tmp_path / "crops"), "--quiet")
    assert result.exit_code == 1, result.output
    assert "0 of 2 images could be read" in result.output
    # one readable image is enough to go on
    bf.valid_jpeg(tmp_path / "b.jpg")
    result = _run("crop", str(tmp_path / "m.csv"), "-o", str(tmp_path / "crops2"), "--quiet", "--sample", "0")
    assert result.exit_code == 0, result.output
    assert "1 of 2 images cropped" in result.output


def test_manifest_check_refuses_a_header_only_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("image_path,patient_id,diagnosis\n")
    result = _run("manifest", "check", str(tmp_path / "m.csv"), "--quiet")
    assert result.exit_code == 1 and "no_rows" in result.output and "no data rows" in result.output


def test_manifest_check_of_a_semicolon_file_shows_the_header_it_read(tmp_path):
    (tmp_path / "m.csv").write_text("image_path;patient_id;diagnosis\na.jpg;p1;acne\n")
    result = _run("manifest", "check", str(tmp_path / "m.csv"), "--quiet")
    assert result.exit_code == 1
    assert "the header read was ['image_path;patient_id;diagnosis']" in result.output
    assert "separated by ';'" in result.output


def test_a_full_disk_is_reported_with_the_file_being_written(tmp_path, monkeypatch):
    import errno
    import os

    from skin_cnn.core import io as atomic
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as os.fsync raises it: no file name

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "out" / "report.json"
    try:
        atomic.write_json(target, {"a": 1})
    except OSError as exc:
        message = str(exc)
    else:
        raise AssertionError("no error")
    assert "No space left on device" in message and str(target) in message
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []  # no temporary left


def test_a_refused_input_is_one_line_without_a_debugging_hint_and_a_system_failure_offers_one():
    import click
    import pytest

    from skin_cnn import cli as cli_module

    class Group(cli_module.LazyGroup):  # the CLI's error handling, with commands of the test's own
        def get_command(self, ctx, name):
            return click.Group.get_command(self, ctx, name)

    group = Group(name="g")

    @group.command("refuse")
    def refuse():
        raise ValueError("data.csv: row 3: diagnosis 'acnee' is not one of the five")

    @group.command("fail")
    def fail():
        raise RuntimeError("the disk went away")

    for name, expected in (("refuse", "data.csv: row 3: diagnosis 'acnee' is not one of the five"),
                           ("fail", "the disk went away (run with --debug for the traceback)")):
        with pytest.raises(click.ClickException) as info:
            group.main([name], standalone_mode=False)
        assert info.value.format_message() == expected
