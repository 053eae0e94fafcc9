"""Command-line flags of the ComfyUI stand-in.

The flags are declared with parser.add_argument exactly like ComfyUI's comfy/cli_args.py so
that tools reading the supported flags from this file find the same names.
"""

import argparse
import os


def is_valid_directory(path):
    if path is None:
        return None
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is not a valid directory.")
    return path


parser = argparse.ArgumentParser()

parser.add_argument("--listen", type=str, default="127.0.0.1", metavar="IP", nargs="?", const="0.0.0.0,::", help="Specify the IP address to listen on.")
parser.add_argument("--port", type=int, default=8188, help="Set the listen port.")
parser.add_argument("--enable-cors-header", type=str, default=None, metavar="ORIGIN", nargs="?", const="*", help="Enable CORS.")
parser.add_argument("--max-upload-size", type=float, default=100, help="Set the maximum upload size in MB.")
parser.add_argument("--base-directory", type=str, default=None, help="Set the ComfyUI base directory.")
parser.add_argument("--extra-model-paths-config", type=str, default=None, metavar="PATH", nargs="+", action="append", help="Load one or more extra_model_paths.yaml files.")
parser.add_argument("--output-directory", type=str, default=None, help="Set the ComfyUI output directory.")
parser.add_argument("--temp-directory", type=str, default=None, help="Set the ComfyUI temp directory (the temp dir is DIR/temp).")
parser.add_argument("--input-directory", type=str, default=None, help="Set the ComfyUI input directory.")
parser.add_argument("--user-directory", type=is_valid_directory, default=None, help="Set the ComfyUI user directory with an absolute path. It must exist.")
parser.add_argument("--database-url", type=str, default=None, help="Specify the database URL, e.g. sqlite:////abs/path/comfyui.db or sqlite:///:memory:.")
parser.add_argument("--auto-launch", action="store_true", help="Automatically launch ComfyUI in the default browser.")
parser.add_argument("--disable-auto-launch", action="store_true", help="Disable auto launching the browser.")
parser.add_argument("--cpu", action="store_true", help="Use the CPU for everything.")
parser.add_argument("--use-sage-attention", action="store_true", help="Use sage attention.")
parser.add_argument("--preview-method", type=str, default="none", help="Default preview method for sampler nodes.")
parser.add_argument("--cache-classic", action="store_true", help="Use the old style (aggressive) caching.")
parser.add_argument("--cache-lru", type=int, default=0, help="Use LRU caching with a maximum of N node results cached.")
parser.add_argument("--cache-none", action="store_true", help="Reduced RAM/VRAM usage at the expense of executing every node for each run.")
parser.add_argument("--disable-metadata", action="store_true", help="Disable saving prompt metadata in files.")
parser.add_argument("--disable-all-custom-nodes", action="store_true", help="Disable loading all custom nodes.")
parser.add_argument("--whitelist-custom-nodes", type=str, nargs="+", default=[], help="Custom nodes loaded even with --disable-all-custom-nodes.")
parser.add_argument("--disable-api-nodes", action="store_true", help="Disable loading all api nodes.")
parser.add_argument("--multi-user", action="store_true", help="Enables per-user storage.")
parser.add_argument("--verbose", default="INFO", const="DEBUG", nargs="?", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="Set the logging level")
parser.add_argument("--log-stdout", action="store_true", help="Send normal process output to stdout instead of stderr (default).")
parser.add_argument("--front-end-root", type=str, default=None, help="The local filesystem path to the directory where the frontend is located.")

args = parser.parse_args()
