"""Options shared by several commands, so every command spells them the same way."""
import click

from skin_cnn.core.specs import DERMNET_WATERMARK_BOX, check_mask

out_option = click.option(
    "-o", "--out", "out", required=True, type=click.Path(), help="Output file or folder."
)
seed_option = click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
icd10_map_option = click.option("--icd10-map", type=click.Path(dir_okay=False), default=None,
                                help="ICD-10 → category CSV for an icd10 column.")


def quiet_option(bars="bars"):
    """``--quiet``: no progress bar(s) (``bars``: how the command's help names them)."""
    return click.option("--quiet", is_flag=True, help=f"No progress {bars}.")


def _same_path(a, b):
    """Whether paths ``a`` and ``b`` name one file: equal once resolved, or one inode (links)."""
    import os

    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: not the same file
        return False


def refuse_overwriting(inputs, outputs, option="-o/--out"):
    """Stop a command before it writes any of ``outputs`` over one of its ``inputs``.

    Writing the split of ``M.csv`` to ``M.csv`` would replace the user's only manifest with the
    rows that survived validation, without a word; the same holds for every command that writes
    files. Each command lists the files it reads and every file it would write (for a folder
    output, the names it writes there), and calls this before reading anything.

    Parameters
    ----------
    inputs, outputs : iterable of path-like or None
        ``None`` entries (options not given) are ignored.
    option : str
        The option named in the message.

    Raises
    ------
    click.UsageError
        One line naming the output, the input it would replace and what to do.
    """
    inputs = [i for i in inputs if i is not None]
    for out in (o for o in outputs if o is not None):
        for given in inputs:
            if _same_path(out, given):
                raise click.UsageError(
                    f"{option}: writing {out} would overwrite the input {given}; "
                    "choose another output path"
                )


def interrupted(started, resume_command, again_command="run the same command again"):
    """What Ctrl-C during a long command says, and the exit it takes (status 130, as a shell's).

    Click alone prints "Aborted!", which does not say that the finished epochs or folds are kept
    and that the command can go on from them.

    Parameters
    ----------
    started : bool
        Whether anything resumable was written yet (a run's ``config.json``).
    resume_command : str
        The command that continues the work.
    """
    if started:
        click.echo(f"\ninterrupted: what finished is kept; continue with `{resume_command}`", err=True)
    else:
        click.echo(f"\ninterrupted before anything was trained; {again_command}", err=True)
    return SystemExit(130)


# ---------------------------------------------------------------------------------------------
# How the intervals of an evaluation are computed: the same options, spelled and checked the same
# way, wherever intervals are reported (evaluate, compare).


def stacked(*decorators):
    """One decorator applying ``decorators`` as if written one above the other, first on top."""

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def interval_options(*, n_bootstrap_help, auc_ci_help, confidence_help, bootstrap_method=False):
    """``--n-bootstrap`` [``--bootstrap-method``] ``--auc-ci`` ``--seed`` ``--confidence``, given to
    the command as one ``settings`` (:class:`~skin_cnn.core.specs.EvalSettings`).

    Parameters
    ----------
    n_bootstrap_help, auc_ci_help, confidence_help : str
        What the option means for this command (what its bootstrap resamples, for instance).
    bootstrap_method : bool
        Offer ``--bootstrap-method percentile|bca`` as well (else the bootstrap is percentile).
    """
    options = [
        click.option("--n-bootstrap", default=2000, show_default=True, type=click.IntRange(0),
                     help=n_bootstrap_help),
        click.option("--auc-ci", default="logit", show_default=True, type=click.Choice(["logit", "wald"]),
                     help=auc_ci_help),
        seed_option,
        click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999),
                     help=confidence_help),
    ]
    if bootstrap_method:
        options.insert(1, click.option("--bootstrap-method", default="percentile", show_default=True,
                                       type=click.Choice(["percentile", "bca"]), help="Bootstrap interval."))

    def decorate(command):
        return stacked(*options)(_settings_argument(command))

    return decorate


def _settings_argument(command):
    """``command`` called with one ``settings`` in place of the interval options' five values."""
    import functools

    @functools.wraps(command)
    def wrapper(*args, n_bootstrap, auc_ci, seed, confidence, bootstrap_method="percentile", **kwargs):
        from skin_cnn.core.specs import EvalSettings

        settings = EvalSettings(n_bootstrap=n_bootstrap, seed=seed, confidence=confidence,
                                bootstrap_method=bootstrap_method, auc_ci=auc_ci)
        return command(*args, settings=settings, **kwargs)

    return wrapper


def precision_option(default="auto"):
    """``--precision auto|float32|bfloat16|float16``: what the VGG-16 trunk computes in."""
    from skin_cnn.core.compute_precision import PRECISIONS

    return click.option(
        "--precision",
        type=click.Choice(PRECISIONS, case_sensitive=False),
        default=default,
        show_default=True,
        help="What the VGG-16 trunk computes in when it runs. auto: float16 on a GPU, else bfloat16 on a CPU "
        "with AMX-BF16 or AVX512-BF16, else float32 (docs/models.md).",
    )


def gathered(name, build, fields):
    """A decorator that hands a command one object in place of the values of several options.

    Settings that travel together reach the library as one dataclass; the command receives it
    as the keyword ``name`` (``build(**values)``), built from the options named in ``fields``.
    The options stay declared where they are, so ``--help`` lists them in the same order. Put it
    anywhere between ``@click.command`` and the function.

    Parameters
    ----------
    name : str
        The keyword the command receives.
    build : callable
        Makes the object from the options' values, given by their Python names.
    fields : iterable of str
        The Python names of the options (``batch_size`` for ``--batch-size``).
    """
    import functools

    fields = tuple(fields)

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            values = {field: kwargs.pop(field) for field in fields}
            return command(*args, **{name: build(**values)}, **kwargs)

        return wrapper

    return decorate


#: Names ``--mask-box`` accepts besides four fractions.
MASK_BOX_NAMES = {"dermnet-watermark": DERMNET_WATERMARK_BOX}


class MaskBox(click.ParamType):
    """``--mask-box``: ``LEFT,TOP,RIGHT,BOTTOM`` fractions of the photo, or a name of :data:`MASK_BOX_NAMES`."""

    name = "box"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        if text in MASK_BOX_NAMES:
            return MASK_BOX_NAMES[text]
        try:
            box = tuple(float(v) for v in text.split(","))
            return check_mask(0.0, [box])[1][0]
        except ValueError as exc:
            names = ", ".join(MASK_BOX_NAMES)
            reason = str(exc) if len(text.split(",")) == 4 else "expected four fractions LEFT,TOP,RIGHT,BOTTOM"
            self.fail(f"{value!r}: {reason} (or one of: {names})", param, ctx)
