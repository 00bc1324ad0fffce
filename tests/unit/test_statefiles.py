"""routed's state files read back as hostile input (issue 25, finding 8): each corrupt file is
refused with its path, the field and what to do; files are root's alone and their renames synced."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from routed import statefile
from routed.docker.reservations import Reservations
from routed.ipam.backends import Unavailable
from routed.ipam.etcd import Cache
from routed.workloads.store import StoreError, WorkloadStore

GOOD_WORKLOAD = {"id": "web1", "netns": "web1", "ips": ["10.65.1.1"], "ifname": "eth0"}


def write(path: Path, content: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("workloads", "needle"),
    [
        (
            [{k: v for k, v in GOOD_WORKLOAD.items() if k != "netns"}],
            "field workloads[0].netns: Field required",
        ),
        ([{**GOOD_WORKLOAD, "ips": "10.65.1.1"}], "field workloads[0].ips"),
        ([{**GOOD_WORKLOAD, "ips": ["10.65.1.300"]}], "field workloads[0].ips[0]"),
        ([{**GOOD_WORKLOAD, "ips": []}], "field workloads[0].ips"),
        ([{**GOOD_WORKLOAD, "netns": ""}], "netns is empty"),
        ([{**GOOD_WORKLOAD, "id": "../../etc"}], "field workloads[0].id"),
        ([{**GOOD_WORKLOAD, "ifname": "x" * 40}], "field workloads[0].ifname"),
        ([GOOD_WORKLOAD, {**GOOD_WORKLOAD, "netns": 7}], "field workloads[1].netns"),
        ([{**GOOD_WORKLOAD, "owner": "x"}], "field workloads[0].owner: Extra inputs are not permitted"),
        ({"web1": GOOD_WORKLOAD}, "field workloads"),
    ],
)
def test_a_corrupt_workloads_file_is_refused_naming_file_field_and_fix(
    tmp_path: Path, workloads: Any, needle: str
) -> None:
    path = write(tmp_path / "workloads.json", {"version": 1, "workloads": workloads})
    with pytest.raises(StoreError) as refused:
        WorkloadStore(tmp_path).load()
    message = str(refused.value)
    assert str(path) in message and needle in message and "move the file away" in message, message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "cannot read it"),
        ([1, 2], "format None is not 1"),
        ({"version": 2, "workloads": []}, "format 2 is not 1"),
    ],
)
def test_an_unreadable_workloads_file_is_refused(tmp_path: Path, content: Any, needle: str) -> None:
    write(tmp_path / "workloads.json", content)
    with pytest.raises(StoreError, match=needle):
        WorkloadStore(tmp_path).load()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"addresses": {"10.65.1.1": {"pool": "p"}}}, "field addresses.10.65.1.1.owner"),
        ({"addresses": {"not-an-ip": {"pool": "p", "owner": "o", "since": 1}}}, "field addresses.not-an-ip"),
        ({"addresses": {"10.65.1.1": {"pool": "p", "owner": "o", "since": "yesterday"}}}, "since"),
        ({"published": {"ep": [{"hostPort": -1, "containerPort": 80, "protocol": "tcp"}]}}, "hostPort"),
        ({"published": {"ep": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}}, "protocol"),
    ],
)
def test_a_corrupt_docker_reservations_file_is_refused(
    tmp_path: Path, data: dict[str, Any], needle: str
) -> None:
    path = write(tmp_path / "docker.json", {"version": 1, **data})
    with pytest.raises(statefile.StateFileError) as refused:
        Reservations.load(path)
    message = str(refused.value)
    assert str(path) in message and needle in message and "move the file away" in message, message


def test_docker_reservations_round_trip(tmp_path: Path) -> None:
    from ipaddress import ip_address

    saved = Reservations(tmp_path / "docker.json")
    saved.add(ip_address("10.65.1.5"), "pool-a", "docker-1", now=12.5)
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "10.0.0.1"}]
    saved.publish("ep1", ports)
    loaded = Reservations.load(tmp_path / "docker.json")
    assert loaded.held == saved.held and loaded.published == {"ep1": ports}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"blocks": ["10.65.1.0/33"]}, "field blocks[0]"),
        ({"blocks": "10.65.1.0/26"}, "field blocks"),
        ({"to_record": {"10.65.1.1": 5}}, "field to_record.10.65.1.1"),
        ({"empty_since": {"10.65.1.0/26": "soon"}}, "field empty_since"),
    ],
)
def test_a_corrupt_ipam_cache_is_refused(tmp_path: Path, data: dict[str, Any], needle: str) -> None:
    path = write(tmp_path / "ipam.json", {"version": 1, **data})
    with pytest.raises(Unavailable) as refused:
        Cache.load(path)
    message = str(refused.value)
    assert str(path) in message and needle in message and "move it away" in message, message


def test_a_docker_workload_has_no_netns(tmp_path: Path) -> None:
    docker = {**GOOD_WORKLOAD, "id": "docker-c327c63f7381", "netns": "", "runtime": "docker"}
    write(tmp_path / "workloads.json", {"version": 1, "workloads": [docker]})
    (loaded,) = WorkloadStore(tmp_path).load().values()
    assert loaded.netns == "" and loaded.runtime == "docker"


def test_state_files_are_roots_alone_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        (tmp_path / "s").mkdir()
        stale_tmp = tmp_path / "s" / "workloads.tmp"
        stale_tmp.write_text("left by an older routed")
        os.chmod(stale_tmp, 0o644)
        WorkloadStore(tmp_path / "s").save({})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "s" / "workloads.json").stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert WorkloadStore(tmp_path / "s").load() == {}


def test_save_syncs_the_directory_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    statefile.save(tmp_path / "x.json", {"version": 1})
    assert synced == ["file", "dir"]
