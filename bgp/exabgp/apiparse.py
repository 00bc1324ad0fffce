"""`direct_attributes`: routed's own `announce attributes` commands parsed without ExaBGP's
configuration machinery, and their attributes parsed once.

ExaBGP reads an API `announce attributes ... nlri ...` by running its configuration parser
over the text as a one-line `static` section (API.api_attributes: a cleanup of the
configuration, a tokeniser over the line, section dispatch, scope contexts), then builds a
new Attributes object and parses every attribute again. On a reflector that was the largest
piece of ExaBGP's own work on a reflected route (py-spy at one client). The routes come out of
one function in the end, the `static` section's `attributes` parser.

A command in the grammar bgp/exabgp/commands.py writes (space-separated tokens, our
attributes only, no quoting, comments or punctuation the tokeniser would split) is now split
on spaces; its attributes part goes through that function once per distinct text and family
(kept, and shared by the Changes of every later command with the same text, as ExaBGP shares
one Attributes object between the prefixes of one command), and each prefix is made into a
Change as that function makes it. Anything else, and anything the function refuses, takes
ExaBGP's own path, which reports errors as before.

The two command callbacks are ExaBGP's own but for their log lines, which they formatted
before knowing whether anything logs them (a change's description and the names of all its
neighbours, ~60 us a command at one neighbour and the names of 999 at 1,000), and for their
answer, which goes out in the step of the last change instead of a step later: at 1,000
clients that step was the next reactor turn, and each turn after a command looks at every
peer's queues.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from bgp.exabgp.neighborranges import address_range

_ADDRESS = r"[0-9A-Fa-f.:]+"
_PREFIX = rf"{_ADDRESS}/[0-9]{{1,3}}"
_NUMBER = r"[0-9]+"

# What commands.export_text and commands.withdraw write, and nothing else: for any line this
# matches, splitting on spaces yields the tokens ExaBGP's tokeniser would (no quote, comment,
# comma, parenthesis or end of statement; every bracket already stands alone).
OUR_GRAMMAR = re.compile(
    rf"attributes next-hop (?:{_ADDRESS}|self)"
    r"(?: origin (?:igp|egp|incomplete))?"
    rf"(?: as-path \[(?: {_NUMBER})* \])?"
    rf"(?: med {_NUMBER})?"
    rf"(?: local-preference {_NUMBER})?"
    rf"(?: community \[(?: {_NUMBER}:{_NUMBER})+ \])?"
    rf"(?: originator-id {_ADDRESS})?"
    rf"(?: cluster-list \[(?: {_ADDRESS})+ \])?"
    rf" nlri(?: {_PREFIX})+"
)

# deletes what an address, or a range of them (neighborranges), may hold
_NOT_ADDRESS = str.maketrans("", "", "0123456789ABCDEFabcdef.:-")
_VERBS = {"announce": " announce attributes ", "withdraw": " withdraw attributes "}


def our_selectors(line: str) -> tuple[str, list[str], str] | None:
    """For a line as routed writes it, `neighbor A , neighbor B ... VERB attributes ...` with
    our attributes: (the command name ExaBGP dispatches it to, the `neighbor ADDRESS`
    selectors, the command after them), which is what its dispatch (API.response: the first
    registered name the line contains) and extract_neighbors make of such a line; else None.
    Checked with operations over the whole text at once (a reflector's change names 999
    clients, and a Python step per selector is a millisecond). A selector may be a range,
    `neighbor FIRST-LAST` (bgp/exabgp/neighborranges.py), which only match_addresses reads."""
    verb = "announce"
    at = line.find(_VERBS[verb])
    if at <= 0:
        verb = "withdraw"
        at = line.find(_VERBS[verb])
        if at <= 0:
            return None
    head, text = line[:at], line[at + 1 :]
    selectors = head.split(" , ")
    addresses = head.replace("neighbor ", "").split(" , ")
    if (
        not head.startswith("neighbor ")
        or head.count("neighbor ") != len(selectors)
        or head.count(" , neighbor ") != len(selectors) - 1
        or len(addresses) != len(selectors)
        or "" in addresses
        or "".join(addresses).translate(_NOT_ADDRESS)  # only hex digits, dots, colons and dashes
        or OUR_GRAMMAR.fullmatch(text, len(verb) + 1) is None
    ):
        return None
    if "-" in head and None in map(address_range, [s for s in selectors if "-" in s]):
        return None  # ExaBGP's own path answers it: no neighbour matches
    return f"{verb} attributes", selectors, text


TEMPLATES_MAX = 4096  # distinct (attributes, family): a reflector has one per client at most
_templates: dict[tuple[str, Any, Any], tuple[Any, Any]] = {}


def _template(head: str, last_prefix: str, key: tuple[str, Any, Any]) -> tuple[Any, Any]:
    """(Attributes, next hop) of `head` for prefixes of `key`'s family, parsed by ExaBGP's own
    `attributes` over `head nlri last_prefix` (its families and `self` come from the last prefix)."""
    from exabgp.configuration.core.tokeniser import Iterator as Tokens  # type: ignore[import-untyped]
    from exabgp.configuration.static import attributes  # type: ignore[import-untyped]

    cached = _templates.get(key)
    if cached is None:
        tokens = Tokens()
        tokens.replenish([*head.split(" ")[1:], "nlri", last_prefix])  # less the command word
        # api_attributes parses withdrawals as announcements too (Configuration.partial's
        # default action); the command callback sets each change's action afterwards
        tokens.announce = True
        (change,) = attributes(tokens)
        if len(_templates) >= TEMPLATES_MAX:
            _templates.clear()
        cached = _templates[key] = (change.attributes, change.nlri.nexthop)
    return cached


@functools.cache
def _exabgp() -> tuple[Any, ...]:
    """What parse_attributes uses of ExaBGP, imported once (an import statement on every command
    is ~3 us), and only in ExaBGP's process: routed's daemon never loads ExaBGP."""
    from exabgp.bgp.message import Action  # type: ignore[import-untyped]
    from exabgp.bgp.message.update.nlri import CIDR, INET  # type: ignore[import-untyped]
    from exabgp.configuration.static.parser import prefix  # type: ignore[import-untyped]
    from exabgp.protocol.ip import IP  # type: ignore[import-untyped]
    from exabgp.rib.change import Change  # type: ignore[import-untyped]

    return Action, CIDR, INET, prefix, IP, Change


def parse_attributes(text: str) -> list[Any] | None:
    """The Changes ExaBGP's api_attributes builds for `text` (the command after its action,
    `attributes ... nlri ...`), or None when the text is not in our grammar or the parser
    refuses it: the caller then takes ExaBGP's own path."""
    Action, CIDR, INET, prefix, IP, Change = _exabgp()
    if OUR_GRAMMAR.fullmatch(text) is None:
        return None
    head, _, nlri = text.partition(" nlri ")
    words = nlri.split(" ")
    try:
        masks = [prefix(_Word(word)) for word in words]
        top = masks[-1].top()
        afi, safi = IP.toafi(top), IP.tosafi(top)  # every prefix of a command gets the last's
        attributes, nexthop = _template(head, words[-1], (head, afi, safi))
    except (ValueError, IndexError, TypeError, OSError):
        return None
    changes = []
    for mask in masks:
        change = Change(INET(afi, safi, Action.UNSET), attributes)
        change.nlri.cidr = CIDR(mask.pack(), mask.mask)
        change.nlri.nexthop = nexthop
        changes.append(change)
    return changes


def direct_attributes(api_class: Any, callbacks: dict[str, Any] | None = None) -> None:
    """API.api_attributes through parse_attributes, the two commands' callbacks (in
    `callbacks`, ExaBGP's registry of text commands unless given) with lazy log lines, and
    routed's lines dispatched to them and their selectors read by our_selectors."""
    from exabgp.bgp.message import Action
    from exabgp.logger import log  # type: ignore[import-untyped]
    from exabgp.reactor.api.command import announce  # type: ignore[import-untyped]
    from exabgp.reactor.api.command.command import Command  # type: ignore[import-untyped]

    from bgp.exabgp.manypeers import match_addresses

    parse_with_configuration = api_class.api_attributes
    respond = api_class.response
    registry = Command.callback["text"] if callbacks is None else callbacks
    last: list[Any] = [None, None]  # (a line, our_selectors of it): read once, by identity

    def ours(line: str) -> tuple[str, list[str], str] | None:
        if last[0] is not line:
            last[0], last[1] = line, our_selectors(line)
        found: tuple[str, list[str], str] | None = last[1]
        return found

    def response(self: Any, reactor: Any, service: str, command: str, use_json: bool) -> Any:
        found = ours(command) if not use_json else None
        if found is None:
            return respond(self, reactor, service, command, use_json)
        return registry[found[0]](self, reactor, service, command, use_json)

    @functools.wraps(parse_with_configuration)  # __wrapped__: ExaBGP's, for the tests
    def api_attributes(self: Any, command: str, peers: Any) -> Any:
        _, text = command.split(" ", 1)
        changes = parse_attributes(text)
        if changes is None:
            return parse_with_configuration(self, command, peers)
        return changes

    def route_command(action: Any) -> Any:
        def command(self: Any, reactor: Any, service: str, line: str, use_json: bool) -> bool:
            def callback() -> Iterator[bool]:
                try:
                    found = ours(line)
                    if found is not None:
                        _, selectors, text = found
                        peers = match_addresses(reactor.peers(service), selectors)
                    else:
                        descriptions, text = announce.extract_neighbors(line)
                        peers = announce.match_neighbors(reactor.peers(service), descriptions)
                    if not peers:
                        self.log_failure(f"no neighbor matching the command : {text}")
                        reactor.processes.answer_error(service)
                        yield True
                        return
                    changes = self.api_attributes(text, peers)
                    if not changes:
                        self.log_failure(f"command could not parse route in : {text}")
                        reactor.processes.answer_error(service)
                        yield True
                        return
                    for position, change in enumerate(changes, 1):
                        change.nlri.action = action
                        done = reactor.configuration.inject_change(peers, change)
                        if action == Action.ANNOUNCE or done:
                            verb = "added to" if action == Action.ANNOUNCE else "removed from"
                            log.info(
                                lambda c=change, v=verb: f"route {v} {_names(peers)} : {c.extensive()}", *INFO
                            )
                        else:
                            self.log_failure(f"route not found on {_names(peers)} : {change.extensive()}")
                        if position < len(changes):
                            yield False  # other callbacks' turn between changes, not after the last

                    reactor.processes.answer_done(service)
                except (ValueError, IndexError):
                    self.log_failure("issue parsing the route")
                    reactor.processes.answer_error(service)
                    yield True

            reactor.asynchronous.schedule(service, line, callback())
            return True

        return command

    api_class.api_attributes = api_attributes
    api_class.response = response
    for name in ("attribute", "attributes"):
        registry[f"announce {name}"] = route_command(Action.ANNOUNCE)
        registry[f"withdraw {name}"] = route_command(Action.WITHDRAW)


INFO = ("processes", "INFO")  # where and how API.log_message logs


class _Word:
    """One token, as ExaBGP's `prefix` parser reads tokens (it also notes their family)."""

    __slots__ = ("afi", "word")

    def __init__(self, word: str) -> None:
        self.word = word

    def __call__(self) -> str:
        return self.word


def _names(peers: Any) -> str:
    return ", ".join(peers) if peers else "all peers"
