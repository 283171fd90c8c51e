"""An interactive demo: see where the model looks, move alpha, watch the answer change.

Starts a local web page (Gradio) on the shipped toy model and the synthetic Controlled-A scenes (generated into
data/ on first use; everything works offline), or on any supported checkpoint and dataset. Open the printed URL.

Examples:
    python app.py
    python app.py --port 8080 --limit 100
    python app.py --model-name llava1.5 --dataset Controlled_Images_A --split val --device cuda
    python app.py --model-path finetuned/toy-b/best --dataset Synthetic_Controlled_B
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from common.cli import OneLineParser
from common.errors import ToolkitError
from dataset_zoo.catalog import get_spec
from dataset_zoo.splits import SPLITS
from methods import method_names
from model_zoo.registry import DTYPE_NAMES, PROMPT_FORMATS, check_device_name, resolve_model_reference
from runner.config import RunConfig


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python app.py", description=__doc__.split("\n\n")[0],
                           epilog="Examples:" + __doc__.split("Examples:")[1],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--model-name", default=RunConfig.model_name,
                       help="registry name, e.g. llava1.5, qwen2-vl, toy (default: %(default)s)")
    model.add_argument("--model-path", default=None, help="a local model folder or hub id (overrides --model-name)")
    model.add_argument("--dtype", choices=DTYPE_NAMES, default=RunConfig.dtype,
                       help="auto: float32 on CPU, the checkpoint's dtype on a GPU (default: %(default)s)")
    model.add_argument("--device", default=RunConfig.device,
                       help="auto, cuda, cuda:1, mps or cpu (default: %(default)s)")
    model.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=RunConfig.prompt_format,
                       help="chat, paper or auto, as for main_aro.py (default: %(default)s)")
    model.add_argument("--max-new-tokens", type=int, default=RunConfig.max_new_tokens,
                       help="answer length (default: %(default)s)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default=RunConfig.dataset, help="benchmark name (default: %(default)s)")
    data.add_argument("--data-root", default=RunConfig.data_root, help="data folder (default: %(default)s)")
    data.add_argument("--split", choices=SPLITS, default="all", help="which samples to browse (default: %(default)s)")
    data.add_argument("--limit", type=int, default=None, help="browse only the first N samples")
    data.add_argument("--download", action="store_true", help="fetch missing annotations and images")
    page = parser.add_argument_group("page")
    page.add_argument("--method", default="scaling_vis", choices=method_names(),
                      help="the method selected when the page opens (default: %(default)s)")
    page.add_argument("--host", default="127.0.0.1",
                      help="address to serve on; 0.0.0.0 exposes the demo to the network (default: %(default)s)")
    page.add_argument("--port", type=int, default=7860, help="port to serve on (default: %(default)s)")
    page.add_argument("--max-upload-mb", type=float, default=50,
                      help="largest image file accepted, in MB (default: %(default)s)")
    page.add_argument("--max-upload-megapixels", type=float, default=40,
                      help="largest image accepted, in millions of pixels (default: %(default)s)")
    page.add_argument("--verbose", action="store_true", help="log debug messages")
    return parser


def check(args: argparse.Namespace) -> None:
    """Settings that are wrong whatever the model: reported before anything slow starts."""
    get_spec(args.dataset)
    resolve_model_reference(args.model_path or args.model_name)
    check_device_name(args.device)
    if not 0 < args.port < 65536:
        raise ToolkitError(f"--port {args.port} is not a port number (1-65535)")
    if args.limit is not None and args.limit < 1:
        raise ToolkitError(f"--limit {args.limit} leaves nothing to browse; give a positive number or drop it")
    if args.max_new_tokens < 1:
        raise ToolkitError(f"--max-new-tokens {args.max_new_tokens} must be at least 1")
    if args.max_upload_mb <= 0 or args.max_upload_megapixels <= 0:
        raise ToolkitError("--max-upload-mb and --max-upload-megapixels must be positive")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports to the web
    try:
        check(args)
        from demo.server import serve  # after the checks: importing it loads torch and gradio

        serve(args)
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
