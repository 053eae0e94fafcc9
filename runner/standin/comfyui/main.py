"""ComfyUI stand-in: serves ComfyUI's HTTP and WebSocket API for a few toy nodes.

Standard library only (Python 3.11). Used by runpod-comfy's tests in place of ComfyUI, which
needs torch. Run: python3 main.py --listen 127.0.0.1 --port 8188 [ComfyUI's flags].
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from comfy.cli_args import args  # noqa: E402  (parses the command line)
import server  # noqa: E402

if __name__ == "__main__":
    sys.exit(server.main(args))
