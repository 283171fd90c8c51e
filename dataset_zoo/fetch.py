"""`python -m dataset_zoo.fetch NAME ... --root data`: download datasets before a run.

The same as running any command with `--download`, without loading a model. See dataset_zoo.download
for the sources, the atomic writes and `--mirror`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from common.cli import OneLineParser
from common.errors import ToolkitError

logger = logging.getLogger(__name__)

def download_dataset(name: str, root: Path | str = "data", vsr_split: str = "test", mirror: Optional[str] = None,
                     prompt_dir: Optional[Path | str] = None) -> int:
    """Fetch everything `name` needs (annotations, all images; paper prompts with prompt_dir); return its size."""
    from dataset_zoo import get_dataset  # the loader decides which images the rows reference

    return len(get_dataset(name, root=root, split="all", download=True, vsr_split=vsr_split,
                           download_mirror=mirror, prompt_dir=prompt_dir))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Fetch the named datasets (annotations, images, optionally the paper prompt files) into the data root."""
    from dataset_zoo.catalog import DATASET_NAMES

    parser = OneLineParser(prog="python -m dataset_zoo.fetch", description=main.__doc__)
    parser.add_argument("names", nargs="+", choices=DATASET_NAMES, metavar="NAME",
                        help=f"dataset names: {', '.join(DATASET_NAMES)}")
    parser.add_argument("--root", default="data", help="data root (default: data)")
    parser.add_argument("--vsr-split", default="test", choices=("train", "dev", "test"))
    parser.add_argument("--mirror", default=None, help="a local folder or URL laid out like the data root")
    parser.add_argument("--prompt-dir", default=None, help="also fetch the paper's prompt files into this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for name in args.names:
            n = download_dataset(name, args.root, args.vsr_split, args.mirror, args.prompt_dir)
            logger.info("%s: %d samples ready under %s", name, n, args.root)
    except ToolkitError as err:
        logger.error("error: %s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
