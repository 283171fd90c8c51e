"""`python app.py`'s work after the flags: the dataset and the model loaded once, the engine, the page, the server."""
from __future__ import annotations

import argparse
import logging

from common.errors import ToolkitError
from dataset_zoo import get_dataset
from dataset_zoo.boxes import box_source_for
from demo.engine import Engine
from model_zoo import get_model

logger = logging.getLogger(__name__)


def load_engine(args: argparse.Namespace) -> Engine:
    """The samples to browse and the model, loaded once for every visitor (data first: it fails faster)."""
    dataset = get_dataset(args.dataset, root=args.data_root, split=args.split, download=args.download)
    samples = list(dataset[: args.limit] if args.limit else dataset)
    if not samples:
        raise ToolkitError(f"{args.dataset} ({args.split} split) has no samples to browse")
    vlm = get_model(args.model_path or args.model_name, dtype=args.dtype, device=args.device,
                    prompt_format=args.prompt_format)
    try:
        boxes = box_source_for(args.dataset, args.data_root)
    except ToolkitError:
        boxes = None  # only the synthetic scenes ship boxes; the heatmaps are drawn without outlines
    return Engine(vlm, samples, dataset=args.dataset, max_new_tokens=args.max_new_tokens, box_source=boxes)


def serve(args: argparse.Namespace) -> None:
    from demo.page import build, launch  # gradio: imported once the model loaded, so flag errors come first

    engine = load_engine(args)
    max_bytes = int(args.max_upload_mb * 2 ** 20)
    page = build(engine, model_label=args.model_path or args.model_name, initial_method=args.method,
                 max_upload_bytes=max_bytes, max_upload_pixels=int(args.max_upload_megapixels * 1e6))
    logger.info("serving %s on %s with %d samples of %s", args.model_path or args.model_name, args.host,
                len(engine.samples), args.dataset)
    try:
        launch(page, host=args.host, port=args.port, max_upload_bytes=max_bytes)
    except OSError as err:
        raise ToolkitError(f"cannot serve on {args.host}:{args.port} ({err}); choose another --port") from None
