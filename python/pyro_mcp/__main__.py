"""``python -m pyro_mcp``: serve pyro's MCP server on stdio."""

import sys

from . import create_server

if __name__ == "__main__":
    sys.exit(create_server().run())
