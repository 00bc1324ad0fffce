"""routed's helper processes (the BFD process, the Docker front, ExaBGP) run as root: a `routed/`
or `bgp/` directory in the cwd of `routed run`, or a PYTHONPATH, must not replace the installed
package in them (issue 25, finding 7)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from bgp.exabgp.process import Channel, ExaBgpSupervisor
from routed.detached import start_detached

pytestmark = pytest.mark.root  # network namespaces, as root (tests/conftest.py)

SHADOW = "import pathlib; pathlib.Path({marker!r}).write_text('shadowed')\nraise SystemExit(3)\n"


def _shadow_packages(where: Path, marker: Path) -> None:
    """`routed/` and `bgp/` packages that, imported, leave a mark and exit."""
    for package in ("routed", "routed/bfd", "bgp", "bgp/exabgp"):
        (where / package).mkdir(parents=True, exist_ok=True)
        (where / package / "__init__.py").write_text(SHADOW.format(marker=str(marker)))


@pytest.fixture
def shadowed_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "cwd"
    marker = tmp_path / "marker"
    _shadow_packages(cwd, marker)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PYTHONPATH", str(cwd))
    return marker


async def test_the_bfd_process_ignores_a_shadowing_package_in_the_cwd(
    shadowed_cwd: Path, tmp_path: Path
) -> None:
    control = tmp_path / "bfd.sock"
    child = await start_detached(
        "routed.bfd.process", ["--control", str(control)], control, "the BFD process"
    )
    try:
        assert control.exists()
        assert not shadowed_cwd.exists(), "the child imported routed/ from the cwd"
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
        await child.wait()


async def test_exabgp_ignores_a_shadowing_package_in_the_cwd(shadowed_cwd: Path, tmp_path: Path) -> None:
    got_channel = asyncio.Event()

    async def on_channel(channel: Channel) -> None:
        got_channel.set()

    def config(api_command: str) -> str:
        return f"process routed {{\n    run {api_command};\n    encoder json;\n}}\n"

    supervisor = ExaBgpSupervisor(tmp_path / "run", config, {}, on_channel)
    running = asyncio.create_task(supervisor.run())
    try:
        # ExaBGP up and its API process found: bgp.exabgp.launch ran from the installed package
        await asyncio.wait_for(got_channel.wait(), 30)
        assert supervisor.restarts == 0
        assert not shadowed_cwd.exists(), "ExaBGP's launcher imported bgp/ from the cwd"
    finally:
        await supervisor.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert os.getcwd().endswith("cwd")
