"""The `callm` command line."""

import argparse
import sys


def _models(args: argparse.Namespace) -> int:
    from callm.model_files import DEFAULT_MODEL, list_models

    for alias, installed, description in list_models():
        default = " (default)" if alias == DEFAULT_MODEL else ""
        state = "installed" if installed else "not installed"
        print(f"{alias:32} {state:14} {description}{default}")
    return 0


def _parsers(args: argparse.Namespace) -> int:
    from callm.plugins import load_general_plugins
    from callm.tool_parsers import ToolParserManager

    load_general_plugins()
    for path in args.tool_parser_plugin or []:
        ToolParserManager.import_tool_parser(path)
    print("\n".join(ToolParserManager.list_registered()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    models = commands.add_parser("models", help="list model aliases and whether they are installed")
    models.set_defaults(run=_models)
    parsers = commands.add_parser("parsers", help="list the tool-call parsers")
    parsers.add_argument("--tool-parser-plugin", action="append",
                         help="a plugin file or module to load first (repeatable)")
    parsers.set_defaults(run=_parsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ImportError, KeyError, ValueError, FileNotFoundError) as e:
        print(f"callm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
