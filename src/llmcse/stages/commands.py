"""Commands that are not pipeline stages: ``data list``, ``serve-llm`` and ``prompteol`` (``run`` is
registered by ``llmcse.pipeline``, which it drives and which is built on the stages).

Each adds its own subparser (``Stage.add_arguments``) and sets ``func``; their flags are stated here
(``prompteol``'s in ``embed/prompteol.py``, beside the code it drives).
"""

from __future__ import annotations

import argparse
import json
import os

from llmcse.stages.base import Stage

DATA_DIR_HELP = "benchmark data folder (default: $LLMCSE_DATA, else ../shared/data)"


# ------------------------------------------------------------------------------------------- data list
def cmd_data_list(args: argparse.Namespace) -> int:
    from llmcse.data.inventory import data_inventory, format_inventory

    inventory = data_inventory(args.data_dir)
    print(json.dumps(inventory, indent=2) if args.json else format_inventory(inventory))
    return 0


def add_data(sub) -> argparse.ArgumentParser:
    data = sub.add_parser("data", help="inspect benchmark data")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    listing = actions.add_parser("list", help="tasks found in the data dir, their sizes, missing standard ones")
    listing.add_argument("--data-dir", help=DATA_DIR_HELP)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_data_list)
    data.set_defaults(func=lambda args: (data.print_help(), 0)[1])
    return data


# ------------------------------------------------------------------------------------------- serve-llm
def cmd_serve_llm(args: argparse.Namespace) -> int:
    from llmcse.llm import load_llm
    from llmcse.llm.server import ServerLimits, check_exposure, listen, make_server

    api_key = args.api_key or os.environ.get("LLMCSE_API_KEY") or None
    check_exposure(args.host, api_key)  # host, key and port first: loading a model takes a while
    sock = listen(args.host, args.port)
    llm = load_llm(args.llm, batch_size=args.max_batch, dtype=args.dtype) if args.llm.startswith("hf:") else load_llm(args.llm)
    limits = ServerLimits(max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens,
                          max_tokens=args.max_tokens, request_timeout=args.request_timeout)
    server = make_server(llm, host=args.host, model_name=args.model_name, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, limits=limits, api_key=api_key, sock=sock)
    host, port = server.server_address[:2]
    print(f"serving {llm.spec} at http://{host}:{port}/v1 (model name {args.model_name or llm.spec}); Ctrl-C stops",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_serve_llm(sub) -> argparse.ArgumentParser:
    from llmcse.utils.validate import int_at_least, non_negative_float, positive_float, positive_int

    se = sub.add_parser("serve-llm", help=SERVE_LLM.help, formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="example:\n  llmcse serve-llm --llm hf:SmolLM2-135M-Instruct --port 8000\n"
                               "  llmcse generate --llm openai:http://127.0.0.1:8000/v1#smollm2 ...\n"
                               "off this machine (--host 0.0.0.0) clients need a key: --api-key or $LLMCSE_API_KEY")
    se.add_argument("--llm", default="hf:SmolLM2-135M-Instruct")
    se.add_argument("--host", default="127.0.0.1")
    se.add_argument("--port", type=int_at_least(0), default=8000, help="0 picks a free port")
    se.add_argument("--model-name", help="name clients use (default: the spec)")
    se.add_argument("--max-batch", type=positive_int, default=32, help="concurrent requests generated together")
    se.add_argument("--max-wait-ms", type=non_negative_float, default=20.0,
                    help="how long a request waits for others to batch with")
    se.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    se.add_argument("--api-key", help="clients must send 'Authorization: Bearer KEY' (default: $LLMCSE_API_KEY); "
                                      "required when --host is not a loopback address")
    se.add_argument("--max-tokens", type=positive_int, default=512,
                    help="the most tokens one request may ask for (also its default)")
    se.add_argument("--max-prompt-tokens", type=positive_int, default=4096, help="longer prompts get 400")
    se.add_argument("--max-body-bytes", type=positive_int, default=1_000_000, help="larger request bodies get 413")
    se.add_argument("--request-timeout", type=positive_float, default=300.0,
                    help="seconds until a request that got no answer gets 504")
    se.set_defaults(func=cmd_serve_llm)
    return se


def add_prompteol(sub) -> argparse.ArgumentParser:
    from llmcse.embed.prompteol import add_prompteol_parser

    return add_prompteol_parser(sub)


DATA = Stage(name="data", help="inspect benchmark data", add_arguments=add_data)
SERVE_LLM = Stage(name="serve-llm", help="serve a local LLM over an OpenAI-compatible HTTP API (batched)",
                  add_arguments=add_serve_llm)
PROMPTEOL = Stage(name="prompteol", help="save a decoder LLM as a PromptEOL sentence embedder (plain "
                                         "sentence-transformers folder)", add_arguments=add_prompteol)
