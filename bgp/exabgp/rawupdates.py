"""routed's own change to ExaBGP (issue 18), applied by bgp.exabgp.launch: a received UPDATE
that `wire.is_plain` vouches for is not decoded by ExaBGP (~15 us a route in objects and
JSON) but passed to routed as its bytes, `{"type": "update", ..., "message": {"raw":
HEX}}`, for routed's bulk decoder (bgp/exabgp/wire.py). Every other UPDATE (malformed,
unusual, End-of-RIB) takes ExaBGP's decoder and reaches routed as JSON exactly as before,
so ExaBGP's error handling (RFC 7606, NOTIFICATIONs) is unchanged.
"""

from __future__ import annotations

from typing import Any


def raw_updates() -> None:
    """Plain received UPDATEs skip ExaBGP's decoder and reach the API as their bytes."""
    from exabgp.bgp.message import Message  # type: ignore[import-untyped]
    from exabgp.bgp.message.direction import Direction  # type: ignore[import-untyped]
    from exabgp.bgp.message.update import Update  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.attribute import Attributes  # type: ignore[import-untyped]
    from exabgp.protocol.family import AFI, SAFI  # type: ignore[import-untyped]
    from exabgp.reactor.api.processes import Processes  # type: ignore[import-untyped]

    from bgp.exabgp.wire import is_plain

    class RawUpdate(Update):  # type: ignore[misc]
        """An UPDATE left undecoded: no NLRI or attributes for ExaBGP, its bytes for routed."""

        def __init__(self, body: bytes) -> None:
            super().__init__([], Attributes())
            self.body = body

    if hasattr(Update, "exabgp_unpack_message"):
        return  # applied already
    unpack = Update.unpack_message.__func__
    Update.exabgp_unpack_message = Update.unpack_message  # ExaBGP's own, for comparisons
    ipv6_unicast = (AFI.ipv6, SAFI.unicast)

    def unpack_plain_raw(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
        if (
            direction == Direction.IN
            and negotiated.asn4
            and is_plain(data, ipv6=ipv6_unicast in negotiated.families)
        ):
            return RawUpdate(bytes(data))
        return unpack(cls, data, direction, negotiated)

    Update.unpack_message = classmethod(unpack_plain_raw)

    parsed = Processes._dispatch[Message.CODE.UPDATE]

    def write_update(self: Any, peer: Any, direction: str, update: Any, *rest: Any) -> None:
        if not isinstance(update, RawUpdate):
            parsed(self, peer, direction, update, *rest)
            return
        line = (
            f'{{ "type": "update", "neighbor": {{ "address": {{ "local": "{peer["local-address"]}", '
            f'"peer": "{peer["peer-address"]}" }}, "asn": {{ "local": {peer["local-as"]}, "peer": '
            f'{peer["peer-as"]} }}, "direction": "{direction}", '
            f'"message": {{ "raw": "{update.body.hex()}" }} }} }}'
        )
        for process in self._notify(peer, f"{direction}-{Message.CODE.UPDATE.SHORT}"):
            self.write(process, line, peer)

    Processes._dispatch[Message.CODE.UPDATE] = write_update
