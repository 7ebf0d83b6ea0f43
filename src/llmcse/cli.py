"""``llmcse`` command line, built from the stage registry (``llmcse.stages``).

A stage's flags are its config dataclass's fields (``stages/flags.py``: the same names, defaults and
checks as its recipe section and its Python API keywords) plus the few extras its stage file
declares; plain commands (``data list``, ``serve-llm``, ``prompteol``, ``run``) add their own parser.
To add or change a flag, edit the stage file, not this one.

Exit codes: 0 done; 2 a usage or input error (argparse's, or an ``LlmcseError``: one line naming the
file, flag or value); 1 an internal error (a bug: its traceback is shown); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import sys

from llmcse.errors import LlmcseError

logger = logging.getLogger("llmcse")

EPILOG = """examples:
  llmcse data list
  llmcse eval --model all-MiniLM-L6-v2 --tasks sts
  llmcse embed --model all-MiniLM-L6-v2 --input sentences.txt --output emb.npy
  llmcse run recipes/quickstart.toml
every stage command takes its settings as flags or as --set KEY=VALUE (the recipe's names).
exit codes: 0 done, 2 usage or input error (one line naming the file, flag or value),
  1 internal error (a bug: the traceback is shown), 130 interrupted."""


def _version() -> str:
    from llmcse import __version__

    return __version__


def _add_verbosity(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``-v``/``-q`` before or after the subcommand (after it, they must not reset what came before)."""
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                        help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="only warnings and errors, no progress bars")


def _subparsers(parser: argparse.ArgumentParser):
    """Every parser below ``parser`` (``data`` -> ``data list``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                yield child
                yield from _subparsers(child)


def build_parser() -> argparse.ArgumentParser:
    import llmcse.pipeline  # noqa: F401 - registers the run command
    from llmcse.stages import STAGES
    from llmcse.stages.flags import add_config_flags

    parser = argparse.ArgumentParser(
        prog="llmcse", description="Turn LLMs into better text embeddings: synthesize data, train, evaluate.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_verbosity(parser, top=True)
    parser.add_argument("--version", action="version", version=f"llmcse {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, stage in STAGES.items():
        if stage.add_arguments:  # a plain command: its own flags and func
            stage.add_arguments(sub)
            continue
        p = sub.add_parser(name, help=stage.help, description=stage.help, epilog=stage.epilog or None,
                           aliases=list(stage.aliases), formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_flags(p, stage)
        if stage.cli_extras:
            stage.cli_extras(p)
        if stage.executor:  # its library call takes executor= (llmcse.utils.executor)
            from llmcse.utils.executor import add_executor_options

            add_executor_options(p)
        p.set_defaults(func=functools.partial(run_stage, stage))
    for child in _subparsers(parser):
        _add_verbosity(child)
    return parser


def run_stage(stage, args: argparse.Namespace) -> int:
    """A stage command: its config from the flags and ``--set``; ``--dry-run`` prints it; else the stage
    runs (``Stage.execute``: files checked, then run; on Ray where asked) and its summary is printed."""
    from llmcse.stages.flags import config_from_args, option_name

    config = config_from_args(stage, args)
    scale_out = contextlib.nullcontext()
    if stage.executor:  # --executor / --ray-address / --actors (--workers N: N actors here), checked first
        from llmcse.utils.executor import options_from_args, using

        scale_out = using(**options_from_args(args))
    if args.dry_run:
        if stage.check:
            stage.check(config)  # a bad LLM spec or option mix is refused on a dry run too
        print(json.dumps(dataclasses.asdict(config), indent=2, default=str))
        return 0
    with scale_out:
        result = stage.execute(config, option=functools.partial(option_name, stage))
    if stage.summary:
        print(stage.summary(config, result))
    return 0


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("llmcse").setLevel(level)
    # third-party chatter stays at WARNING unless -vv
    for noisy in ("sentence_transformers", "transformers", "httpx", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    if verbose < 1:
        # transformers' "Loading weights" bars say nothing useful; our own bars stay.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except LlmcseError as e:
        print(f"llmcse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmcse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
