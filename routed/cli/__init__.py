"""The `routed` command line.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. Errors go to stderr and say
what is wrong and what to do. The parser is routed.cli.parser, the commands routed.cli.commands
(and routed.cli.lab), what they print routed.cli.render.
"""

from routed.cli.main import main
from routed.cli.render import filter_routes

__all__ = ["filter_routes", "main"]
