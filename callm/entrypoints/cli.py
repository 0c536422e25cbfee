"""The `callm` command line: `serve`, `models`, `parsers`."""

import argparse
import logging
import sys


def _size(text: str) -> int:
    """Bytes from "2147483648", "512M" or "2G"."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    if text and text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def _tool_limits(args: argparse.Namespace):
    from callm.agents.tools import ToolLimits

    return ToolLimits(timeout=args.mcp_tool_timeout,
                      max_concurrent_calls=args.mcp_max_concurrent_calls,
                      max_result_chars=args.mcp_max_result_chars)


def _check_tool_flags(args: argparse.Namespace) -> None:
    """Fail fast, before loading the model, on tool-parser flags that cannot work."""
    from callm.tool_parsers import ToolParserManager
    from callm.tool_parsers.detect import AUTO

    for plugin in args.tool_parser_plugin or []:
        ToolParserManager.import_tool_parser(plugin)
    # No parser named (or "auto"): detected from the chat template once the model is loaded.
    if args.tool_call_parser and args.tool_call_parser != AUTO:
        ToolParserManager.get_tool_parser(args.tool_call_parser)
    from callm.reasoning import ReasoningParserManager

    for plugin in args.reasoning_parser_plugin or []:
        ReasoningParserManager.import_reasoning_parser(plugin)
    if args.reasoning_parser and args.reasoning_parser != "auto":  # auto: from the template
        ReasoningParserManager.get_reasoning_parser(args.reasoning_parser)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from callm.config import EngineConfig
    from callm.engine.async_engine import AsyncLLMEngine
    from callm.engine.llm_engine import LLMEngine
    from callm.entrypoints.openai.api_server import build_app, build_context
    from callm.plugins import load_general_plugins

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    load_general_plugins()
    _check_tool_flags(args)
    config = EngineConfig(
        model=args.model, dtype=args.dtype, quantization=args.quantization,
        num_threads=args.num_threads,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        block_size=args.block_size, kv_cache_memory=args.kv_cache_memory,
        enable_prefix_caching=args.enable_prefix_caching, seed=args.seed,
        tensor_parallel_size=args.tensor_parallel_size,
        distributed_executor_backend=args.distributed_executor_backend,
        attention_backend=args.attention_backend, chat_template=args.chat_template,
        tool_call_parser=args.tool_call_parser,
        structured_outputs_backend=args.structured_outputs_backend)
    engine = AsyncLLMEngine(LLMEngine(config))
    try:
        ctx = build_context(engine, args.served_model_name, args.enable_auto_tool_choice,
                            args.tool_call_parser, args.chat_template, args.reasoning_parser,
                            mcp_config=args.mcp_config, tool_limits=_tool_limits(args),
                            max_tool_rounds=args.max_tool_rounds)
        app = build_app(ctx, api_key=args.api_key)  # resolves --tool-call-parser auto
        logging.getLogger(__name__).info(
            "serving %s on http://%s:%d (OpenAI API under /v1, Ollama's under /api)",
            ctx.model_names[0], args.host, args.port)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.uvicorn_log_level)
    finally:
        engine.shutdown()
    return 0


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
    from callm.reasoning import ReasoningParserManager

    for path in args.reasoning_parser_plugin or []:
        ReasoningParserManager.import_reasoning_parser(path)
    print("tool-call parsers (--tool-call-parser):")
    _describe(ToolParserManager.list_registered(), ToolParserManager.get_tool_parser)
    print("\nreasoning parsers (--reasoning-parser):")
    _describe(ReasoningParserManager.list_registered(),
              ReasoningParserManager.get_reasoning_parser)
    return 0


def _describe(names: list[str], get) -> None:
    """Each class once: its names, then the first paragraph of its docstring."""
    by_class: dict[type, list[str]] = {}
    for name in names:
        by_class.setdefault(get(name), []).append(name)
    for cls, cls_names in by_class.items():
        doc = cls.__doc__ or sys.modules[cls.__module__].__doc__ or "(no description)"
        print(" ".join(cls_names))
        print(f"    {' '.join(doc.split(chr(10) * 2)[0].split())}")


def _add_serve_args(p: argparse.ArgumentParser) -> None:
    from callm.model_files import DEFAULT_MODEL

    p.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                   help=f"model alias, GGUF file or HF folder (default: {DEFAULT_MODEL})")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", nargs="+", help="name(s) clients use for the model")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 and /api routes "
                                     "(not on Ollama's liveness routes / and /api/version)")
    p.add_argument("--enable-auto-tool-choice", action="store_true",
                   help="parse tool calls from model output when tool_choice is auto (with "
                        "the --tool-call-parser, detected when not named)")
    p.add_argument("--tool-call-parser",
                   help="tool-call format of the model, e.g. hermes; 'auto' (the default) "
                        "detects it from the chat template")
    p.add_argument("--mcp-config",
                   help='an {"mcpServers": {...}} file: its servers\' tools serve requests with '
                        '{"type": "mcp", "server_label": NAME} tools, called by the server')
    p.add_argument("--mcp-tool-timeout", type=_positive(float), default=30.0,
                   help="seconds an MCP tool call may take before the model gets an error "
                        "result instead (default 30)")
    p.add_argument("--mcp-max-concurrent-calls", type=_positive(int), default=16,
                   help="MCP tool calls in flight at once across all requests (default 16)")
    p.add_argument("--mcp-max-result-chars", type=_positive(int), default=16000,
                   help="longer MCP tool results are cut, with a marker (default 16000)")
    p.add_argument("--max-tool-rounds", type=_positive(int), default=8,
                   help="rounds of MCP tools one request may run, the default and the most a "
                        "request's max_tool_rounds may ask (default 8)")
    p.add_argument("--tool-parser-plugin", action="append",
                   help="a file or module registering tool parsers (repeatable)")
    p.add_argument("--reasoning-parser",
                   help="reasoning format of a thinking model, e.g. qwen3 (or 'auto': "
                        "detected from the chat template): thoughts go to `reasoning`, never "
                        "`content`")
    p.add_argument("--reasoning-parser-plugin", action="append",
                   help="a file or module registering reasoning parsers (repeatable)")
    p.add_argument("--chat-template", help="chat template file or text")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32", "float16"],
                   help="model and KV cache dtype; auto (default): bfloat16 or float32, "
                        "whichever this CPU runs faster (measured at startup)")
    p.add_argument("--quantization", default="auto", choices=["auto", "none", "int8", "int4"],
                   help="keep the model's matrices quantized and multiply them quantized; auto "
                        "(default): a quantized GGUF's precision class (Q4 -> int4, Q5-Q8 -> "
                        "int8) when that decodes faster on this CPU (measured at startup)")
    p.add_argument("--num-threads", type=int,
                   help="torch threads for the model (default: every core)")
    p.add_argument("--max-model-len", type=int, help="context length (prompt + output)")
    p.add_argument("--max-num-seqs", type=int, default=64)
    p.add_argument("--max-num-batched-tokens", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--kv-cache-memory", type=_size, help="KV cache size in bytes, e.g. 1G")
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction,
                   default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--distributed-executor-backend", choices=["uni", "mp", "ray"])
    p.add_argument("--attention-backend", choices=["torch", "triton"])
    p.add_argument("--structured-outputs-backend", default="xgrammar",
                   choices=["xgrammar", "llguidance", "outlines"],
                   help="grammar engine for tool_choice required/named, strict tools, "
                        "response_format and structured_outputs (default: xgrammar)")
    p.add_argument("--uvicorn-log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug", "trace"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server: the OpenAI API under /v1, "
                                              "Ollama's under /api")
    _add_serve_args(serve)
    serve.set_defaults(run=_serve)
    models = commands.add_parser("models", help="list model aliases and whether they are installed")
    models.set_defaults(run=_models)
    parsers = commands.add_parser("parsers", help="list the tool-call parsers")
    parsers.add_argument("--tool-parser-plugin", action="append",
                         help="a plugin file or module to load first (repeatable)")
    parsers.add_argument("--reasoning-parser-plugin", action="append",
                         help="a reasoning plugin file or module to load first (repeatable)")
    parsers.set_defaults(run=_parsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ImportError, KeyError, ValueError, FileNotFoundError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"callm: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
