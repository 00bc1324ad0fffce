"""TCP-MD5 password files, GTSM rendering, and why a session is not coming up (pure, plus files)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bgp.exabgp.config import neighbor_block
from bgp.hints import HINT_AFTER, establish_hint
from routed.bgpconfig import speaker_config
from routed.config import ConfigError, parse_config
from routed.dataplane.netstat import tcp_md5_drops
from tests.support.nodes import node_yaml

BASE = node_yaml("peers:")


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
    speaker = speaker_config(cfg)
    assert "md5-password czNjcmV0;" in neighbor_block(speaker, speaker.neighbors[0])  # base64 of s3cret


@pytest.mark.parametrize(
    ("mode", "text", "needle"),
    [
        (0o644, "s3cret", "must be root's and 0600: chown root"),
        (0o640, "s3cret", "mode 0640"),
        (0o600, "", "1-80 bytes"),
        (0o600, "x" * 81, "1-80 bytes"),
        (0o600, "é" * 41, "1-80 bytes, this one is 82"),
        (0o600, "two\nlines", "control characters"),
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
    cfg = speaker_config(parse_config(config("ttl_security: true"), "node.yaml"))
    block = neighbor_block(cfg, cfg.neighbors[0])
    assert "outgoing-ttl 255;" in block and "incoming-ttl 254;" in block
    plain = speaker_config(parse_config(config("description: x"), "node.yaml"))
    assert "ttl" not in neighbor_block(plain, plain.neighbors[0])


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
    from routed.bfdsupervisor import sessions

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


# --- issue 25, findings 3 and 4: secrets ExaBGP must carry exactly, rotation, secrecy ---------

HOSTILE_PASSWORDS = [
    "it's-S3cret",
    's3"cret',
    "back\\slash",
    'x"; local-as 1; md5-password "y',
    "x'; local-as 1; md5-base64 false; #",
    "\\u0041\\n{};#",
    "späce and ünïcode",
]


def exabgp_reads(text: str, tmp_path: Path) -> dict[str, Any]:
    """ExaBGP's own configuration parser on a rendered config: its neighbours by address."""
    from exabgp.configuration.configuration import Configuration
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())
    path = tmp_path / "exabgp.conf"
    path.write_text(text)
    parsed = Configuration([str(path)])
    assert parsed.reload(), parsed.error
    return {str(n["peer-address"]): n for n in parsed.neighbors.values()}


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_exabgp_gets_every_password_exactly_and_nothing_else(password: str, tmp_path: Path) -> None:
    import base64

    from bgp.exabgp.config import render_config

    text = BASE + (
        f"  - {{address: 10.0.0.1, kind: reflector, password: {json.dumps(password)}}}\n"
        '  - {address: 10.0.0.2, kind: reflector, description: "it\'s \\"rr2\\" \\\\ #"}\n'
    )
    cfg = parse_config(text, "node.yaml")
    neighbors = exabgp_reads(render_config(speaker_config(cfg), "/bin/true"), tmp_path)
    assert set(neighbors) == {"10.0.0.1", "10.0.0.2"}
    signed, plain = neighbors["10.0.0.1"], neighbors["10.0.0.2"]
    assert signed["md5-base64"] is True
    assert base64.b64decode(signed["md5-password"]).decode() == password
    # nothing leaked into other statements or the other neighbour
    assert signed["local-as"] == plain["local-as"] == 64512
    assert not plain["md5-password"]


@pytest.mark.parametrize(
    ("password", "needle"),
    [("x" * 81, "1-80 bytes"), ("ü" * 41, "1-80 bytes"), ("a\tb", "control characters"), ("", "1-80 bytes")],
)
def test_passwords_no_peer_could_share_are_refused(password: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(f"password: {json.dumps(password)}"), "node.yaml")
    assert needle in str(info.value) and "node.yaml:7:" in str(info.value), str(info.value)


def test_an_inline_password_is_never_printed() -> None:
    cfg = parse_config(config("password: hunter2-md5, bfd: {auth: {password: hunter2-bfd}}"), "node.yaml")
    for shown in (repr(cfg), str(cfg), repr(cfg.peers[0]), json.dumps(cfg.model_dump(mode="json"))):
        assert "hunter2" not in shown
    assert cfg.peers[0].md5_password() == "hunter2-md5"
    assert cfg.peers[0].bfd is not None and cfg.peers[0].bfd.auth is not None
    assert cfg.peers[0].bfd.auth.secret() == "hunter2-bfd"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_an_inline_password_in_a_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    from routed.config import load_config

    path = tmp_path / "node.yaml"
    path.write_text(config("password: hunter2"))
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:7:" in message and "peers[0].password" in message and f"chmod 600 {path}" in message
    assert "hunter2" not in message
    path.chmod(0o600)
    assert load_config(path).peers[0].md5_password() == "hunter2"
    # a config without inline secrets may be readable by all, as /etc files usually are
    path.write_text(config(f"password_file: {secret(tmp_path)}"))
    path.chmod(0o644)
    assert load_config(path).peers[0].md5_password() == "s3cret"


def test_routed_config_check_refuses_an_inline_password_others_can_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "node.yaml"
    path.write_text(config("password: hunter2"))
    path.chmod(0o644)
    checked = subprocess.run(
        [sys.executable, "-m", "routed.cli", "config", "check", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 2 and "peers[0].password" in checked.stderr, checked.stderr
    assert "hunter2" not in checked.stderr + checked.stdout


def test_a_rotated_password_file_is_a_change_that_rekeys_the_session(tmp_path: Path) -> None:
    from routed.config.reload import plan_reload

    md5_file = secret(tmp_path)
    bfd_file = tmp_path / "bfd.password"
    bfd_file.write_text("bfd-one\n")
    bfd_file.chmod(0o600)
    text = config(f"password_file: {md5_file}, bfd: {{auth: {{password_file: {bfd_file}}}}}")
    before = parse_config(text, "node.yaml")
    assert plan_reload(before, parse_config(text, "node.yaml")).empty  # same contents: nothing

    md5_file.write_text("rotated\n")  # the same path, a new key
    plan = plan_reload(before, after := parse_config(text, "node.yaml"))
    assert plan.changed == ("peers[10.0.0.1].password (contents)",)
    assert [str(p.address) for p in plan.peers_changed] == ["10.0.0.1"] and not plan.bfd_rekeyed
    assert after.peers[0].md5_password() == "rotated" and before.peers[0].md5_password() == "s3cret"
    rendered = speaker_config(after)
    assert "md5-password cm90YXRlZA==;" in neighbor_block(rendered, rendered.neighbors[0])

    bfd_file.write_text("bfd-two\n")
    plan = plan_reload(after, parse_config(text, "node.yaml"))
    assert plan.changed == ("peers[10.0.0.1].bfd.auth.password (contents)",)
    assert [str(p.address) for p in plan.bfd_rekeyed] == ["10.0.0.1"] and not plan.peers_changed
    assert "rotated" not in json.dumps(plan.summary()) and "bfd-two" not in json.dumps(plan.summary())

    # an inline password changed in the file is seen too (its dump is masked)
    one, two = (parse_config(config(f"password: {p}"), "node.yaml") for p in ("one", "two"))
    assert [str(p.address) for p in plan_reload(one, two).peers_changed] == ["10.0.0.1"]


ETCD = """\
name: h1
router_id: 10.0.0.11
asn: 64512
fabric: {{interface: eth1, address: 10.0.0.11}}
pools: [10.65.0.0/16]
ipam: {{mode: etcd, etcd: {{endpoints: [{endpoint}]{extra}}}}}
"""


def pem(tmp_path: Path, name: str, mode: int = 0o600, text: str = "-----BEGIN CERTIFICATE-----\nx\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("endpoint", "extra", "needle"),
    [
        ("https://10.0.0.1:2379", "", "is https: give tls"),
        ("10.0.0.1:2379", ", tls: {{ca_file: {ca}}}", "write https://10.0.0.1:2379"),
        ("https://10.0.0.1:2379", ", tls: {{ca_file: {plain}}}", "not a PEM file"),
        (
            "https://10.0.0.1:2379",
            ", tls: {{ca_file: {ca}, cert_file: {ca}}}",
            "cert_file and key_file together",
        ),
        (
            "https://10.0.0.1:2379",
            ", tls: {{ca_file: {ca}, cert_file: {ca}, key_file: {open_key}}}",
            "must be root's and 0600",
        ),
        ("10.0.0.1:2379", ", username: root", "username and a password"),
        ("10.0.0.1:2379", ", password_file: {secret}", "username and a password"),
        ("ftp://10.0.0.1:2379", "", "is not an etcd endpoint"),
    ],
)
def test_etcd_tls_and_credentials_are_checked_at_load(
    tmp_path: Path, endpoint: str, extra: str, needle: str
) -> None:
    files = {
        "ca": pem(tmp_path, "ca.pem", 0o644),
        "plain": pem(tmp_path, "plain.pem", 0o644, "not a certificate"),
        "open_key": pem(tmp_path, "key.pem", 0o644, "-----BEGIN PRIVATE KEY-----\nx\n"),
        "secret": secret(tmp_path),
    }
    text = ETCD.format(endpoint=endpoint, extra=extra.format(**files).replace("{{", "{").replace("}}", "}"))
    with pytest.raises(ConfigError) as info:
        parse_config(text, "node.yaml")
    assert needle in str(info.value), str(info.value)


def test_etcd_over_tls_with_a_user(tmp_path: Path) -> None:
    ca, key = (
        pem(tmp_path, "ca.pem", 0o644),
        pem(tmp_path, "key.pem", 0o600, "-----BEGIN PRIVATE KEY-----\nx\n"),
    )
    extra = f", tls: {{ca_file: {ca}, cert_file: {ca}, key_file: {key}}}, username: routed, password_file: {secret(tmp_path)}"
    cfg = parse_config(ETCD.format(endpoint="https://10.0.0.1:2379", extra=extra), "node.yaml")
    assert cfg.ipam.etcd is not None and cfg.ipam.etcd.credentials() == ("routed", "s3cret")
    assert cfg.ipam.etcd.endpoints == ("https://10.0.0.1:2379",)
