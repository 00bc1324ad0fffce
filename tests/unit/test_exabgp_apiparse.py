"""bgp.exabgp.apiparse builds, for every command routed writes, the Changes ExaBGP's own
api_attributes builds through its configuration parser; other text is left to ExaBGP."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from exabgp.reactor.api import API  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from bgp.exabgp import commands
from bgp.exabgp.apiparse import direct_attributes, our_selectors, parse_attributes
from bgp.exabgp.manypeers import linear_extract_neighbors, match_addresses
from bgp.model import Export, Origin
from tests.unit.test_exabgp_extract import released_limit


@pytest.fixture(autouse=True)
def quiet_exabgp_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """ExaBGP's parser logs through a logger only its own main() sets up."""
    from exabgp.logger import log  # type: ignore[import-untyped]

    for level in ("debug", "info", "warning", "error"):
        monkeypatch.setattr(log, level, classmethod(lambda cls, *args, **kwargs: None))


def exabgps(command: str) -> list[Any]:
    """ExaBGP's api_attributes as released, whether or not a test patched the class."""
    original = getattr(API.api_attributes, "__wrapped__", API.api_attributes)
    return list(original(API(None), command, []))


def described(changes: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            type(change.nlri).__name__,
            change.nlri.afi,
            change.nlri.safi,
            change.nlri.action,
            change.index(),
            change.extensive(),
            change.attributes.index(),
            type(change.nlri.nexthop).__name__,
            change.nlri.nexthop.index(),
            sorted(change.attributes.keys()),
        )
        for change in changes
    ]


def without_selector(line: str) -> str:
    """The command as ExaBGP's callback hands it to api_attributes (selectors extracted)."""
    return (
        line[line.index(" announce ") + 1 :] if " announce " in line else line[line.index(" withdraw ") + 1 :]
    )


V4 = st.builds(
    lambda n, length: ipaddress.ip_network((n, length), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
V6 = st.builds(
    lambda n, length: ipaddress.ip_network((n, length), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
ADDRESS = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
EXPORTS = st.builds(
    Export,
    next_hop=st.one_of(st.none(), ADDRESS),
    origin=st.sampled_from(list(Origin)),
    as_path=st.lists(st.integers(1, 2**32 - 1), max_size=4).map(tuple),
    med=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    local_pref=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    communities=st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), max_size=3).map(tuple),
    originator_id=st.one_of(st.none(), st.ip_addresses(v=4)),
    cluster_list=st.lists(st.ip_addresses(v=4), max_size=3).map(tuple),
)
PEERS = [ipaddress.ip_address("10.1.0.1"), ipaddress.ip_address("10.1.0.2")]


@settings(max_examples=400, deadline=None)
@given(EXPORTS, st.lists(st.one_of(V4, V6), min_size=1, max_size=5))
def test_our_announcements_parse_as_exabgp_parses_them(export: Export, prefixes: list[Any]) -> None:
    for line in commands.announce(PEERS, prefixes, export):
        command = without_selector(line)
        theirs = described(exabgps(command))
        for _ in ("parsed", "from the kept attributes"):
            ours = parse_attributes(command.split(" ", 1)[1])
            assert ours is not None, command  # every command we write takes the direct path
            assert described(ours) == theirs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(V4, V6), min_size=1, max_size=5))
def test_our_withdrawals_parse_as_exabgp_parses_them(prefixes: list[Any]) -> None:
    for line in commands.withdraw(PEERS, prefixes):
        command = without_selector(line)
        ours = parse_attributes(command.split(" ", 1)[1])
        assert ours is not None, command
        assert described(ours) == described(exabgps(command))


@pytest.mark.parametrize(
    "text",
    [
        "attributes next-hop 10.0.0.1 origin igp nlri 10.2.0.0/24 224.1.0.0/16",  # the last's family
        "attributes next-hop 10.0.0.1 origin igp nlri 224.1.0.0/16 10.2.0.0/24",
        "attributes next-hop self origin igp nlri 10.2.0.0/24 fd00::/64",
        "attributes next-hop self origin igp nlri fd00::/64 10.2.0.0/24",
        "attributes next-hop 10.0.0.1 nlri 10.2.0.0/24 10.2.0.0/24",
    ],
)
def test_text_in_our_grammar_from_elsewhere_parses_as_exabgp_parses_it(text: str) -> None:
    theirs = described(exabgps(f"announce {text}"))
    for _ in ("parsed", "from the kept attributes"):
        ours = parse_attributes(text)
        assert ours is not None and described(ours) == theirs


def test_commands_with_the_same_attributes_share_them() -> None:
    export = Export(
        next_hop=ipaddress.ip_address("10.0.0.11"), originator_id=ipaddress.ip_address("10.0.0.11")
    )
    (first,) = commands.announce(PEERS, [ipaddress.ip_network("10.65.1.0/26")], export)
    (second,) = commands.announce(PEERS, [ipaddress.ip_network("10.65.2.0/26")], export)
    (other,) = commands.announce(PEERS, [ipaddress.ip_network("10.65.2.0/26")], Export(next_hop=PEERS[0]))
    parsed = [parse_attributes(without_selector(line).split(" ", 1)[1]) for line in (first, second, other)]
    assert all(changes is not None and len(changes) == 1 for changes in parsed)
    a, b, c = (changes[0] for changes in parsed if changes is not None)
    assert a.attributes is b.attributes and a.nlri.nexthop is b.nlri.nexthop
    assert c.attributes is not a.attributes and c.attributes.index() != a.attributes.index()
    assert a.nlri is not b.nlri and a.index() != b.index()


OTHER_TEXT = [
    "announce attributes next-hop 10.0.0.1 label 100 nlri 10.2.0.0/24",  # labelled: ExaBGP's
    "announce attributes next-hop 10.0.0.1 rd 65000:1 label 5 nlri 10.2.0.0/24",
    "announce attributes next-hop 10.0.0.1 med 5 origin igp nlri 10.2.0.0/24",  # our order differs
    "announce attributes next-hop 10.0.0.1 origin igp community [65000:1,65000:2] nlri 10.2.0.0/24",
    "announce attributes next-hop 10.0.0.1 origin igp nlri 10.2.0.0/24 ;",
    "announce attributes next-hop 10.0.0.1 origin igp # a comment nlri 10.2.0.0/24",
    "announce attributes next-hop 10.0.0.1 split /26 nlri 10.2.0.0/24",
    "announce attributes next-hop 10.0.0.1  origin igp nlri 10.2.0.0/24",
    "announce attributes next-hop 10.0.0.1 origin igp nlri",
    "announce attributes next-hop 10.0.0.1 origin igp",
    "announce attributes next-hop 10.0.0.1 origin bogus nlri 10.2.0.0/24",
]


@pytest.mark.parametrize("command", OTHER_TEXT)
def test_other_text_is_left_to_exabgps_parser(command: str) -> None:
    class Probe(API):  # type: ignore[misc]
        pass

    direct_attributes(Probe, {})
    try:
        theirs: Any = described(exabgps(command))
    except (ValueError, IndexError) as error:
        theirs = type(error)
    try:
        patched: Any = described(list(Probe(None).api_attributes(command, [])))
    except (ValueError, IndexError) as error:
        patched = type(error)
    assert patched == theirs


def test_text_out_of_our_grammar_is_not_parsed_directly() -> None:
    for command in OTHER_TEXT[:8]:
        assert parse_attributes(command.split(" ", 1)[1]) is None, command


def test_a_value_the_parser_refuses_goes_to_exabgp() -> None:
    assert parse_attributes("attributes next-hop 10.0.0.999 origin igp nlri 10.2.0.0/24") is None
    assert parse_attributes("attributes next-hop 10.0.0.1 origin igp nlri 10.2.0.0/99") is None


class Recorder:
    """The parts of ExaBGP's reactor a route command's callback touches, recording them."""

    def __init__(self, found: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.found = found
        self.processes = self
        self.configuration = self
        self.asynchronous = self
        self.scheduled: list[Any] = []

    def peers(self, service: str) -> list[str]:
        return ["neighbor 10.1.0.1 local-ip 10.0.0.1", "neighbor 10.1.0.2 local-ip 10.0.0.1"]

    def schedule(self, service: str, line: str, callback: Any) -> None:
        self.scheduled.append(callback)

    def inject_change(self, peers: Any, change: Any) -> bool:
        self.calls.append(("inject", sorted(peers), change.nlri.action, change.extensive()))
        return self.found

    def answer_done(self, service: str) -> None:
        self.calls.append(("done",))

    def answer_error(self, service: str) -> None:
        self.calls.append(("error",))

    def run(self, api: Any, registry: dict[str, Any], line: str) -> list[tuple[Any, ...]]:
        verb = "announce attributes" if " announce " in line else "withdraw attributes"
        registry[verb](api, self, "routed", line, False)
        for callback in self.scheduled:
            list(callback)
        return self.calls


@pytest.mark.parametrize("found", [True, False])
@pytest.mark.parametrize(
    "line",
    [
        "neighbor 10.1.0.1 announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26 10.65.2.0/26",
        "neighbor 10.1.0.2 withdraw attributes next-hop 0.0.0.0 nlri 10.65.1.0/26",
        "neighbor 10.1.0.9 announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26",  # no one
        "neighbor 10.1.0.1 announce attributes next-hop 10.0.0.11 origin bogus nlri 10.65.1.0/26",
        "neighbor 10.1.0.1 announce attributes next-hop 10.0.0.11 label 7 nlri 10.65.1.0/26",
    ],
)
def test_route_commands_do_what_exabgps_do(line: str, found: bool) -> None:
    from exabgp.reactor.api.command import announce  # type: ignore[import-untyped]

    class Probe(API):  # type: ignore[misc]
        pass

    ours: dict[str, Any] = {}
    direct_attributes(Probe, ours)
    theirs = {
        "announce attributes": announce.announce_attributes,
        "withdraw attributes": announce.withdraw_attribute,
    }
    expected = Recorder(found).run(API(None), theirs, line)
    assert Recorder(found).run(Probe(None), ours, line) == expected
    assert expected[-1] in {("done",), ("error",)}


def test_the_answer_goes_out_with_the_last_change_not_a_step_later() -> None:
    """Each step of a callback is a reactor turn at 1,000 clients, and each turn after a command
    looks at every peer's queues: the answer comes with the last change."""
    ours: dict[str, Any] = {}

    class Probe(API):  # type: ignore[misc]
        pass

    direct_attributes(Probe, ours)
    reactor = Recorder()
    line = "neighbor 10.1.0.1 announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26 fd00::/64"
    ours["announce attributes"](Probe(None), reactor, "routed", line, False)
    (callback,) = reactor.scheduled
    next(callback)  # the first change, then the other callbacks' turn
    assert [call[0] for call in reactor.calls] == ["inject"]
    with pytest.raises(StopIteration):
        next(callback)  # the second and last change, and the answer
    assert [call[0] for call in reactor.calls] == ["inject", "inject", "done"]


SELECTOR_WORDS = st.sampled_from(
    [
        "neighbor",
        "10.1.0.1",
        "10.1.0.2",
        "fd00::1",
        ",",
        "*",
        "local-ip",
        "10.0.0.1",
        "",
        "neighbor 10.1.0.1,",
    ]
)
TAILS = st.sampled_from(
    [
        "announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26",
        "withdraw attributes next-hop 0.0.0.0 nlri 10.65.1.0/26 10.65.2.0/26",
        "announce attributes next-hop 10.0.0.11 origin igp med 5 nlri fd00:65::/64",
        "announce attributes next-hop 10.0.0.11 label 7 nlri 10.65.1.0/26",
        "announce route 10.65.1.0/26 next-hop self",
        "teardown 2",
        "announce eor ipv4 unicast",
        "withdraw attributes next-hop 0.0.0.0 nlri 10.65.1.0/26 # reset",
        "announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26 # reset",  # ExaBGP: `reset`
    ]
)
NAMES = [
    "neighbor 10.1.0.1 local-ip 10.0.0.1 local-as 64512 peer-as 64512 router-id 10.0.0.1",
    "neighbor 10.1.0.2 local-ip 10.0.0.1 local-as 64512 peer-as 64512 router-id 10.0.0.1",
    "neighbor fd00::1 local-ip fd00::a local-as 64512 peer-as 64512 router-id 10.0.0.1",
]


def exabgps_dispatch(line: str) -> str | None:
    from exabgp.reactor.api.command.command import Command  # type: ignore[import-untyped]

    for registered in Command.functions:  # API.response's own test, in its own order
        if registered == line or line.endswith(" " + registered) or registered + " " in line:
            return str(registered)
    return None


VALID = ["neighbor 10.1.0.1", "neighbor 10.1.0.2", "neighbor fd00::1", "neighbor 10.9.9.9"]
FAULTY = ["neighbor *", "local-ip 10.0.0.1", "neighbor  10.1.0.1", "neighbor 10.1.0.1,", "neighbor"]
SELECTORS = st.sampled_from([*VALID * 8, *FAULTY, "neighbor 10.1.0.1 local-ip"])
SEPARATORS = st.sampled_from([*[" , "] * 12, " ", ",", " ,  "])
# mostly lines of the shape routed writes, now and then with a fault in them
SELECTOR_LINES = st.builds(
    lambda pairs: "".join(f"{sep}{sel}" for sel, sep in pairs)[3:],
    st.lists(st.tuples(SELECTORS, SEPARATORS), min_size=1, max_size=8),
)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.lists(SELECTOR_WORDS, max_size=10), SELECTOR_LINES.map(lambda line: [line])), TAILS)
def test_our_selectors_read_a_line_as_exabgp_does(words: list[str], tail: str) -> None:
    line = " ".join([*words, tail])
    found = our_selectors(line)
    if found is None:
        return
    verb, selectors, text = found
    assert exabgps_dispatch(line) == verb
    descriptions, command = linear_extract_neighbors(line)
    assert (descriptions, command) == ([[s] for s in selectors], text)
    assert match_addresses(NAMES, selectors) == released_limit().match_neighbors(NAMES, descriptions)


def test_every_line_we_write_takes_our_selectors() -> None:
    peers = [ipaddress.ip_address(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(999)]
    peers.append(ipaddress.ip_address("fd00::1"))
    export = Export(next_hop=PEERS[0], originator_id=ipaddress.ip_address("10.0.0.11"), med=5)
    lines = [
        *commands.announce(peers, [ipaddress.ip_network("10.65.1.0/26")], export),
        *commands.withdraw(
            peers, [ipaddress.ip_network("10.65.1.0/26"), ipaddress.ip_network("fd00:65::/64")]
        ),
    ]
    names = [f"neighbor {peer} local-ip 10.0.0.11 local-as 64512 peer-as 64512" for peer in peers]
    for line in lines:
        found = our_selectors(line)
        assert found is not None
        assert exabgps_dispatch(line) == found[0]
        assert match_addresses(names, found[1]) == names
    assert len(lines[0]) < 300  # four ranges of 250 clients and one IPv6 address, not 1,000 names


def name_of(address: Any) -> str:
    return f"neighbor {address} local-ip 10.0.0.11 local-as 64512 peer-as 64512 router-id 10.0.0.11"


# addresses close together, so that some peers and targets run on and others leave gaps
NEAR_ADDRESSES = st.one_of(
    st.integers(250, 255).map(lambda n: ipaddress.ip_address(f"10.1.0.{n}")),  # runs on into 10.1.1.0
    st.integers(0, 40).map(lambda n: ipaddress.ip_address(f"10.1.1.{n}")),
    st.integers(0, 40).map(lambda n: ipaddress.ip_address(f"fd00::{n:x}")),
)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(NEAR_ADDRESSES, min_size=1, max_size=40, unique=True),
    st.data(),
    st.sampled_from(["announce", "withdraw"]),
)
def test_a_command_with_ranges_reaches_exactly_its_peers(peers: list[Any], data: Any, verb: str) -> None:
    """A route command names its peers in ranges where they run on; matched against the
    configured neighbours (some of them not among the targets, and targets not configured),
    it reaches exactly what ExaBGP's own matching of the same command with every peer named
    one by one reaches."""
    targets = data.draw(st.lists(NEAR_ADDRESSES, min_size=1, max_size=40, unique=True))
    configured = [name_of(peer) for peer in peers]
    prefixes = [ipaddress.ip_network("10.65.1.0/26")]
    if verb == "announce":
        (line,) = commands.announce(targets, prefixes, Export(next_hop=PEERS[0]))
    else:
        (line,) = commands.withdraw(targets, prefixes)
    found = our_selectors(line)
    assert found is not None and exabgps_dispatch(line) == found[0]
    one_by_one = " , ".join(f"neighbor {target}" for target in targets) + line[line.index(f" {verb} ") :]
    descriptions, text = linear_extract_neighbors(one_by_one)
    assert text == found[2]
    assert match_addresses(configured, found[1]) == released_limit().match_neighbors(configured, descriptions)
    assert len(found[1]) <= len(targets)


def test_a_range_never_reaches_a_link_local_peer_with_its_scope() -> None:
    """routed names such a peer on its own (commands._route_selector), and a range's numbers
    cannot tell fe80::2%eth1 from fe80::2%eth2."""
    configured = [name_of("fe80::1"), name_of("fe80::2%eth1"), name_of("fe80::3")]
    assert match_addresses(configured, ["neighbor fe80::1-fe80::3"]) == [configured[0], configured[2]]
    assert match_addresses(configured, ["neighbor fe80::1-fe80::3", "neighbor fe80::2%eth1"]) == configured


@pytest.mark.parametrize(
    "selector",
    [
        "neighbor 10.1.0.3-10.1.0.1",  # the wrong way round
        "neighbor 10.1.0.1-fd00::3",  # two families
        "neighbor 10.1.0.1-",
        "neighbor -10.1.0.1",
        "neighbor 10.1.0.1-10.1.0.2-10.1.0.3",
        "neighbor 10.1.0.1--10.1.0.3",
    ],
)
def test_a_range_that_is_not_one_is_left_to_exabgp(selector: str) -> None:
    """ExaBGP's own path matches nothing to it and answers the command with an error."""
    line = (
        f"neighbor 10.1.0.9 , {selector} announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26"
    )
    assert our_selectors(line) is None
    descriptions, _ = linear_extract_neighbors(line)
    assert released_limit().match_neighbors([name_of("10.1.0.2")], descriptions) == []


@pytest.mark.parametrize(
    "head",
    [
        "neighbor 10.1.0.1 , 10.1.0.2neighbor 10.1.0.3",  # a selector without its key
        "neighbor 10.1.0.1 , neighbor *",
        "neighbor 10.1.0.1 , neighbor 10.1.0.2 local-ip 10.0.0.1",
        "neighbor 10.1.0.1 ,neighbor 10.1.0.2",
        "neighbor neighbor 10.1.0.1",
        "neighbor 10.1.0.1 , neighbor ",
        "peer-as 64512",
    ],
)
def test_selectors_of_other_shapes_are_left_to_exabgp(head: str) -> None:
    assert (
        our_selectors(f"{head} announce attributes next-hop 10.0.0.11 origin igp nlri 10.65.1.0/26") is None
    )
