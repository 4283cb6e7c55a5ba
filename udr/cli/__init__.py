"""The `udr` command line: import files, query with SQL, read the log and row history, branch, tag and
merge, follow change streams, check and repair a lake.

It sits above every layer and imports only the public `udr` API and its own modules. It is the one place
that turns a `udr.UdrError` into one line on stderr and exit code 1; a problem with the command line itself
(a bad option, a missing or unknown input file) exits with 2, Ctrl-C with 130. Output files are written under
a temporary name and renamed when complete, so a failed command never leaves a half-written file behind.

Commands live in `udr.cli.commands`, one module per theme, and a module is imported only when one of its
commands runs (or `--help` lists them): `udr --version` imports none of them.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import click

import udr
from udr.cli.common import BadInput, Failure

# Each command and the module of `udr.cli.commands` that defines it (as a function of the same name,
# with `-` read as `_`); `import` is `import_file` because `import` is a keyword.
_COMMANDS = {
    "init": "tables", "import": "tables", "tables": "tables",
    "sql": "query",
    "log": "history", "show": "history", "history": "history", "changes": "history", "diff": "history",
    "blame": "history",
    "branch": "branches", "tag": "branches", "merge": "branches", "reset": "branches", "revert": "branches",
    "cherry-pick": "branches", "replay": "branches",
    "tail": "streams", "groups": "streams",
    "publish": "publish", "unpublish": "publish",
    "verify": "maintenance", "rebuild": "maintenance", "gc": "maintenance", "stats": "maintenance",
    "compact": "maintenance", "demo": "maintenance",
    "retention": "retention", "expire": "retention", "hold": "retention", "release": "retention",
    "holds": "retention", "erase": "retention",
    "reflog": "audit", "audit": "audit",
    "clone": "remotes", "push": "remotes", "pull": "remotes",
}


class _UdrGroup(click.Group):
    """The command group: loads a command's module when it is asked for, and translates UDR errors and
    Ctrl-C for every command (click's documented lazy-loading group)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted."""
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import the module defining `cmd_name` and return the command, None for an unknown name."""
        theme = _COMMANDS.get(cmd_name)
        if theme is None:
            return None
        module = importlib.import_module(f"udr.cli.commands.{theme}")
        command: click.Command = getattr(module, _function_name(cmd_name))
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their one-line help, read from the modules' source: importing them all
        (and pyarrow with them) would take most of `udr --help`'s time."""
        limit, docstrings = formatter.width - 6 - max(map(len, _COMMANDS)), _docstrings()
        with formatter.section("Commands"):
            formatter.write_dl([(name, click.Command(name, help=docstrings[name]).get_short_help_str(limit))
                                for name in self.list_commands(ctx)])

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """Parse the group's own options, turning a usage error into one line and exit 2."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _usage(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning a `udr.UdrError` into one line and exit 1, a usage error into one line
        and exit 2, Ctrl-C into exit 130."""
        try:
            return super().invoke(ctx)
        except udr.UdrError as exc:
            raise Failure(str(exc) or type(exc).__name__) from exc
        except click.UsageError as exc:
            raise _usage(exc) from exc
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


class _LakeLocation(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """A lake directory (a `Path`), or the URL of a lake in object storage, kept as text: a `Path` would fold
    the URL's "//"."""

    name = "lake"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        text = str(value)
        return text if "://" in text else Path(text)


def _docstrings() -> dict[str, str]:
    """Each command's help text: the docstring of its function."""
    functions: dict[str, str] = {}
    for theme in set(_COMMANDS.values()):
        source = (Path(__file__).parent / "commands" / f"{theme}.py").read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef):
                functions[node.name] = ast.get_docstring(node) or ""
    return {name: functions[_function_name(name)] for name in _COMMANDS}


def _function_name(command: str) -> str:
    """The name of the function defining CLI command `command` in its module."""
    return "import_file" if command == "import" else command.replace("-", "_")


def _usage(exc: click.UsageError) -> BadInput:
    """A usage error as one line that says where the help is (click would print the usage text too)."""
    where = exc.ctx.command_path if exc.ctx is not None else "udr"
    return BadInput(f"{exc.format_message()} (see: {where} --help)")


@click.group(cls=_UdrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--lake",
    type=_LakeLocation(),
    envvar="UDR_LAKE",
    default="lake",
    show_default="$UDR_LAKE, else ./lake",
    help="The lake directory, or a lake in object storage (s3://BUCKET/PREFIX, gs://..., az://...).",
)
@click.version_option(udr.__version__, prog_name="udr")
@click.pass_context
def cli(ctx: click.Context, lake: Path | str) -> None:
    """UDR: versioned tables with cross-table transactions and time travel, in one local directory."""
    ctx.obj = lake


def main() -> None:
    """Run the `udr` console script."""
    cli.main(prog_name="udr")
