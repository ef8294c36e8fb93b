"""The shape of the package's functions: none over 80 lines or over 8 parameters.

A function's length is counted from its ``def`` line to its last line (decorators not counted,
docstring and blank lines counted). Its parameters are every name it accepts: positional-only,
positional, keyword-only, ``*args`` and ``**kwargs``; the ``self`` or ``cls`` of a method is not
counted. A Click command function counts like any other function: each option is a parameter.
Nested functions and methods are checked on their own (``outer.<locals>.inner``, ``Class.method``).

``OVER_LIMITS`` lists the functions that were over a limit when the check came in, with their
(lines, parameters) then. The list only shrinks:

* a function that is not listed and is over a limit fails the test (reshape it: smaller pure
  functions, settings that travel together as one dataclass);
* a listed function that is no longer over either limit, or no longer exists, fails the test until
  its entry is deleted;
* a listed function may not grow past its listed numbers.

When a module moves, its entries move with it (rename the key, same or smaller numbers); never add
a function that is not listed today.
"""
import ast
import textwrap
from pathlib import Path

import pytest

import skin_cnn

PACKAGE_DIR = Path(skin_cnn.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent

MAX_LINES = 80
MAX_PARAMETERS = 8

#: "path::qualified name": (lines, parameters) of each function over a limit when listed.
OVER_LIMITS = {
}


def parameter_count(function, is_method):
    """How many parameters ``function`` (an ``ast.FunctionDef``) takes, ``self``/``cls`` left out.

    Every way of passing a value counts, ``*args`` and ``**kwargs`` included: a long list of
    keyword-only settings is as hard to call as a long positional one.
    """
    arguments = function.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    count = len(names) + (arguments.vararg is not None) + (arguments.kwarg is not None)
    if is_method and names and names[0] in ("self", "cls"):
        count -= 1
    return count


def function_shapes(source):
    """``{qualified name: (lines, parameters)}`` of every function and method in ``source``.

    Lines run from the ``def`` line to the function's last line, decorators left out.
    """
    shapes = {}

    def visit(node, prefix, in_class):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                lines = child.end_lineno - child.lineno + 1
                shapes[name] = (lines, parameter_count(child, in_class))
                visit(child, name + ".<locals>.", False)
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".", True)
            else:
                visit(child, prefix, in_class)

    visit(ast.parse(source), "", False)
    return shapes


def over_limits(shapes):
    """The entries of ``shapes`` over ``MAX_LINES`` or ``MAX_PARAMETERS``."""
    return {name: (lines, params) for name, (lines, params) in shapes.items()
            if lines > MAX_LINES or params > MAX_PARAMETERS}


def package_shapes():
    """``{"skin_cnn/path.py::qualified name": (lines, parameters)}`` over the whole package."""
    shapes = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for name, shape in function_shapes(path.read_text(encoding="utf-8")).items():
            shapes[f"{relative}::{name}"] = shape
    return shapes


def describe(name, shape):
    lines, params = shape
    return f"{name}: {lines} lines, {params} parameters (limits {MAX_LINES} lines, {MAX_PARAMETERS} parameters)"


# --- the checker itself -------------------------------------------------------------------------


def function_source(name, n_params, n_lines, decorators=0, method=False):
    """A function of exactly ``n_lines`` lines (from ``def``) taking ``n_params`` parameters."""
    params = ", ".join(f"p{i}" for i in range(n_params))
    if method:
        params = "self" + (", " + params if params else "")
    body = ["    x = 0"] * (n_lines - 2) + ["    return x"]
    lines = ["@staticmethod"] * decorators + [f"def {name}({params}):"] + body
    source = "\n".join(lines) + "\n"
    if method:
        source = "class C:\n" + textwrap.indent(source, "    ")
    return source


def test_a_function_of_81_lines_is_over_and_one_of_80_is_not():
    long = function_shapes(function_source("long", 1, 81))
    assert long == {"long": (81, 1)}
    assert over_limits(long) == {"long": (81, 1)}
    assert over_limits(function_shapes(function_source("fits", 1, 80))) == {}


def test_decorators_are_not_counted_as_lines():
    assert function_shapes(function_source("f", 1, 80, decorators=3)) == {"f": (80, 1)}


def test_nine_parameters_are_over_and_eight_are_not():
    assert over_limits(function_shapes(function_source("many", 9, 3))) == {"many": (3, 9)}
    assert over_limits(function_shapes(function_source("eight", 8, 3))) == {}


def test_self_is_not_counted_but_a_plain_function_named_with_self_is():
    assert function_shapes(function_source("m", 8, 3, method=True)) == {"C.m": (3, 8)}
    assert over_limits(function_shapes(function_source("m", 9, 3, method=True))) == {"C.m": (3, 9)}


def test_star_args_keyword_only_and_kwargs_all_count():
    source = "def f(a, /, b, *args, c, d=1, **kwargs):\n    return a\n"
    assert function_shapes(source) == {"f": (2, 6)}


def test_nested_functions_and_click_commands_are_checked():
    options = "\n".join(f'@click.option("--o{i}")' for i in range(9))
    params = ", ".join(f"o{i}" for i in range(9))
    source = (f"@click.command()\n{options}\ndef command({params}):\n"
              "    def inner(a, b, c, d, e, f, g, h, i):\n        return a\n    return inner\n")
    assert over_limits(function_shapes(source)) == {"command": (4, 9),
                                                     "command.<locals>.inner": (2, 9)}


# --- the package ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes():
    return package_shapes()


def test_no_function_outside_the_list_is_over_the_limits(shapes):
    new = [describe(name, shape) for name, shape in over_limits(shapes).items()
           if name not in OVER_LIMITS]
    assert not new, (
        "over the limits and not in OVER_LIMITS (split it into smaller functions, or gather "
        "settings that travel together into one dataclass; never add to the list):\n  "
        + "\n  ".join(new))


def test_every_listed_function_is_still_over_a_limit(shapes):
    fixed = [name for name in OVER_LIMITS if name not in over_limits(shapes)]
    assert not fixed, (
        "no longer over the limits (or gone): delete its entry from OVER_LIMITS in "
        "tests/test_code_shape.py (if it moved, rename its key):\n  " + "\n  ".join(fixed))


def test_no_listed_function_grew(shapes):
    grown = [f"{describe(name, shapes[name])}; listed at {OVER_LIMITS[name]}"
             for name in OVER_LIMITS
             if name in shapes and (shapes[name][0] > max(OVER_LIMITS[name][0], MAX_LINES)
                                    or shapes[name][1] > max(OVER_LIMITS[name][1], MAX_PARAMETERS))]
    assert not grown, "grew past its numbers in OVER_LIMITS (shrink it instead):\n  " + "\n  ".join(grown)
