"""TCP-MD5 password files, GTSM rendering, and why a session is not coming up (pure, plus files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bgp.exabgp.config import neighbor_block
from bgp.peers import HINT_AFTER, establish_hint
from routed.config import ConfigError, parse_config
from routed.dataplane.netstat import tcp_md5_drops

BASE = """\
name: h1
router_id: 10.0.0.11
asn: 64512
fabric: {interface: eth1, address: 10.0.0.11}
pools: [10.65.0.0/16]
peers:
"""


def config(peer: str) -> str:
    return BASE + f"  - {{address: 10.0.0.1, kind: reflector, {peer}}}\n"


def secret(tmp_path: Path, mode: int = 0o600, text: str = "s3cret\n") -> Path:
    path = tmp_path / "peer.password"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_password_file_is_read_and_rendered(tmp_path: Path) -> None:
    cfg = parse_config(config(f"password_file: {secret(tmp_path)}"), "node.yaml")
    (peer,) = cfg.peers
    assert peer.md5_password() == "s3cret"
    assert 'md5-password "s3cret";' in neighbor_block(cfg, peer)


@pytest.mark.parametrize(
    ("mode", "text", "needle"),
    [
        (0o644, "s3cret", "must be root's and 0600: chown root"),
        (0o640, "s3cret", "mode 0640"),
        (0o600, "", "1-80 characters"),
        (0o600, "x" * 81, "1-80 characters"),
    ],
)
def test_a_password_file_anyone_else_could_read_is_refused(
    tmp_path: Path, mode: int, text: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(f"password_file: {secret(tmp_path, mode, text)}"), "node.yaml")
    assert needle in str(info.value) and "node.yaml:7:" in str(info.value), str(info.value)


def test_password_file_must_exist_be_absolute_and_not_come_with_a_password(tmp_path: Path) -> None:
    for peer, needle in (
        (f"password_file: {tmp_path}/none", "No such file"),
        ("password_file: peer.password", "absolute path"),
        (f"password: a, password_file: {secret(tmp_path)}", "not both"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(config(peer), "node.yaml")
        assert needle in str(info.value), str(info.value)


def test_ttl_security_renders_gtsm() -> None:
    cfg = parse_config(config("ttl_security: true"), "node.yaml")
    block = neighbor_block(cfg, cfg.peers[0])
    assert "outgoing-ttl 255;" in block and "incoming-ttl 254;" in block
    plain = parse_config(config("description: x"), "node.yaml")
    assert "ttl" not in neighbor_block(plain, plain.peers[0])


def test_hints_name_md5_when_the_kernel_counted_drops() -> None:
    late = HINT_AFTER + 1
    assert establish_hint(True, HINT_AFTER - 1, {}) == ""
    assert "TCPMD5Failure" in establish_hint(True, late, {"TCPMD5Failure": 3})
    assert "dropped 3 segments" in establish_hint(True, late, {"TCPMD5Failure": 3})
    assert "peer has a password set and we have none" in establish_hint(False, late, {"TCPMD5Unexpected": 2})
    assert "looks exactly like this" in establish_hint(True, late, {})
    assert "may be down or unreachable, or expect a TCP-MD5" in establish_hint(False, late, {})
    assert "GTSM" in establish_hint(False, late, {}, uses_gtsm=True)
    assert "GTSM" not in establish_hint(False, late, {})


def test_netstat_counters(tmp_path: Path) -> None:
    netstat = tmp_path / "netstat"
    netstat.write_text(
        "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure\n"
        "TcpExt: 0 1 2 3\n"
        "IpExt: InNoRoutes\nIpExt: 0\n"
    )
    assert tcp_md5_drops(netstat) == {"TCPMD5NotFound": 1, "TCPMD5Unexpected": 2, "TCPMD5Failure": 3}
    assert tcp_md5_drops(tmp_path / "missing") == {}
    assert set(tcp_md5_drops()) <= {"TCPMD5NotFound", "TCPMD5Unexpected", "TCPMD5Failure"}


def test_bfd_auth_from_a_password_file_reaches_the_bfd_process(tmp_path: Path) -> None:
    from routed.bfd.supervise import sessions

    auth = (
        f"bfd: {{interval_ms: 50, auth: {{type: keyed-sha1, key_id: 9, password_file: {secret(tmp_path)}}}}}"
    )
    cfg = parse_config(config(auth), "node.yaml")
    (session,) = sessions(cfg)
    assert session["auth"] == {"type": "keyed-sha1", "key_id": 9, "secret": "s3cret"}
    # the default type is the strongest RFC 5880 has: meticulous keyed SHA1
    (session,) = sessions(parse_config(config("bfd: {auth: {password: x}}"), "node.yaml"))
    assert session["auth"]["type"] == "meticulous-keyed-sha1"


@pytest.mark.parametrize(
    ("auth", "needle"),
    [
        ("{type: keyed-md5, password: 0123456789abcdefg}", "a keyed-md5 secret is 1-16 bytes"),
        ("{type: keyed-sha1, password: 0123456789abcdefghijk}", "a keyed-sha1 secret is 1-20 bytes"),
        ("{type: simple}", "give password or password_file"),
        ("{type: sha256, password: x}", "type"),
        ("{key_id: 256, password: x}", "key_id"),
    ],
)
def test_bfd_auth_mistakes_are_refused_where_they_are(auth: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(f"bfd: {{auth: {auth}}}"), "node.yaml")
    assert needle in str(info.value) and "node.yaml:7:" in str(info.value), str(info.value)


def test_bfd_auth_password_file_must_be_roots_and_0600(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be root's and 0600"):
        parse_config(config(f"bfd: {{auth: {{password_file: {secret(tmp_path, 0o644)}}}}}"), "node.yaml")
