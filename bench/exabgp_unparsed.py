"""ExaBGP as routed launches it, plus one experiment (issue 18, prototype b): UPDATEs are not
decoded by ExaBGP at all, only forwarded raw (`receive { packets; }`). For measurement only:
ExaBGP then no longer validates UPDATEs (no NOTIFICATION for a malformed one), which routed
would have to take over before this could ship.

    python -m bench.exabgp_unparsed server CONF
"""

from __future__ import annotations

from typing import Any

from bgp.exabgp import launch


def skip_update_decoding() -> None:
    from exabgp.bgp.message import Message  # type: ignore[import-untyped]
    from exabgp.bgp.message.update import Update  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.attribute import Attributes  # type: ignore[import-untyped]

    unpack = Message.unpack
    empty = Update([], Attributes())

    def unpack_all_but_updates(message: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
        if message == Update.ID:
            return empty
        return unpack(message, data, direction, negotiated)

    Message.unpack = staticmethod(unpack_all_but_updates)


if __name__ == "__main__":
    launch.patch()
    skip_update_decoding()
    from exabgp.application.main import main  # type: ignore[import-untyped]

    main()
