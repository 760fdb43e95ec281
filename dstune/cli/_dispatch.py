"""The commands a target framework answers (estimate, profile, search): `--framework` resolves to one
registered Framework, whose options class generates the flags and whose method does the work; the
result record is printed as JSON or rendered. This is the only place the CLI meets a framework."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..errors import UserInputError
from ..frameworks import (
    COMMANDS,
    DEFAULT_FRAMEWORK,
    CommandOptions,
    Framework,
    add_flags,
    check_knobs,
    foreign_option,
    framework_names,
    frameworks,
    get_framework,
    options_from,
)
from ..frameworks._common import print_json

HELP = {
    "estimate": "predict memory and throughput of one plan with the analytic cost model",
    "profile": "measure one plan with real short DeepSpeed steps and compare with the cost model",
    "search": "tune a framework's knobs (DeepSpeed-Chat: an Optuna study) and export the fastest plan that fits",
}


def chosen_framework(argv: Sequence[str]) -> Framework:
    """The framework `--framework NAME` names in argv (the default when absent; argparse refuses a bad name)."""
    name = DEFAULT_FRAMEWORK
    for i, token in enumerate(argv):
        if token == "--framework" and i + 1 < len(argv):
            name = argv[i + 1]
        elif token.startswith("--framework="):
            name = token.split("=", 1)[1]
    return get_framework(name) if name in framework_names() else get_framework(DEFAULT_FRAMEWORK)


def register(sub: argparse._SubParsersAction, framework: Framework) -> None:
    """estimate, profile and search, each with `framework`'s flags."""
    others = "; ".join(f"{f.name}: {f.title}" for f in frameworks())
    for command in COMMANDS:
        parser = sub.add_parser(
            command,
            help=HELP[command],
            description=framework.describe(command) or HELP[command],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument(
            "--framework",
            choices=framework_names(),
            default=DEFAULT_FRAMEWORK,
            help=f"target RLHF framework (default: {DEFAULT_FRAMEWORK}; {others}); the flags below are "
            f"{framework.title}'s: see 'dstune {command} --framework NAME --help' for another's",
        )
        add_flags(parser, framework.options.get(command, CommandOptions))
        parser.set_defaults(run=_runner(framework, command), framework_command=True)


def refuse_extras(framework: Framework, command: str, extras: list[str]) -> None:
    """A flag this framework's parser does not have: another framework's (one line naming it), else unknown.
    A command the framework does not answer is refused for that first, whatever else was given."""
    if command not in framework.options:
        getattr(framework, command)(None)
    for token in extras:
        if token.startswith("--"):
            said = foreign_option(framework, command, token.split("=", 1)[0])
            if said:
                raise UserInputError(said)
    raise UserInputError(f"unrecognized arguments: {' '.join(extras)} (see 'dstune {command} --help')")


def _runner(framework: Framework, command: str):  # noqa: ANN202 - argparse's `run` default
    def run(args: argparse.Namespace) -> int:
        if command not in framework.options:
            return int(getattr(framework, command)(args).exit_code)  # the hook refuses in one line
        options = options_from(framework.options[command], args, argv=tuple(args.argv))
        check_knobs(framework, getattr(options, "assignments", ()))
        result = getattr(framework, command)(options)
        if options.json:
            print_json(result.to_json())
        else:
            result.render()
        return int(result.exit_code)

    return run
