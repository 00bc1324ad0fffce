"""What is there of an attached workload, seen from outside `attach`: its interface's MAC and
MTU, a new MTU for both ends of its veth, and what CNI CHECK finds amiss."""

from __future__ import annotations

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from routed.dataplane.workload import WorkloadSpec, family_of, link_index
from routed.netns import NetnsError, async_iproute, check_workload_netns


async def sandbox_interface(spec: WorkloadSpec) -> tuple[str | None, int | None]:
    """The MAC address and MTU of the workload's interface (CNI results carry them; podman
    requires the MAC); the host side's MTU for a runtime's workload, whose side routed leaves."""
    try:
        if spec.handed_off:
            async with AsyncIPRoute() as host:
                index = await link_index(host, spec.host_ifname)
                links = await host.link("get", index=index) if index is not None else []
                return None, (links[0].get("mtu") if links else None)
        check_workload_netns(spec.netns)
        async with async_iproute(spec.netns) as ns:
            index = await link_index(ns, spec.ifname)
            if index is None:
                return None, None
            (link,) = await ns.link("get", index=index)
            return (str(link.get("address")) if link.get("address") else None), link.get("mtu")
    except (OSError, NetlinkError):
        return None, None


async def set_mtu(spec: WorkloadSpec, mtu: int) -> str:
    """Both ends of a workload's veth to `mtu` (a reload's): "changed", "same", or "unreachable"
    for a runtime's workload, whose container side routed does not hold (nor a vanished one)."""
    if spec.handed_off:
        return "unreachable"
    async with AsyncIPRoute() as host:
        index = await link_index(host, spec.host_ifname)
        if index is None:
            return "unreachable"
        (outer,) = await host.link("get", index=index)
        check_workload_netns(spec.netns)
        async with async_iproute(spec.netns) as ns:
            inner = await link_index(ns, spec.ifname)
            if inner is None:
                return "unreachable"
            (link,) = await ns.link("get", index=inner)
            if link.get("mtu") == mtu and outer.get("mtu") == mtu:
                return "same"
            await ns.link("set", index=inner, mtu=mtu)
        await host.link("set", index=index, mtu=mtu)
    return "changed"


async def problems(spec: WorkloadSpec) -> list[str]:
    """What is not as `attach` left it (for CNI CHECK): the host veth up, the workload's
    interface up with its addresses, its default routes via the link-local gateways."""
    found: list[str] = []
    async with AsyncIPRoute() as host:
        index = await link_index(host, spec.host_ifname)
        if index is None:
            return [f"host veth {spec.host_ifname} is missing"]
        (link,) = await host.link("get", index=index)  # a list, not a stream, for "get"
        if not link["flags"] & 1:
            found.append(f"host veth {spec.host_ifname} is down")
    if spec.handed_off:
        return found  # the container side is the runtime's to configure
    try:
        check_workload_netns(spec.netns)
    except NetnsError as exc:
        return [*found, f"network namespace {spec.netns}: {exc}"]
    try:
        async with async_iproute(spec.netns) as ns:
            inner = await link_index(ns, spec.ifname)
            if inner is None:
                return [*found, f"{spec.ifname} is missing in {spec.netns}"]
            have = {a.get("address") async for a in await ns.addr("dump", index=inner)}
            for ip in spec.ips:
                if str(ip) not in have:
                    found.append(f"{spec.ifname} in {spec.netns} lacks {ip}")
            for ip in spec.ips:
                default = [
                    r async for r in await ns.route("dump", family=family_of(ip)) if r.get("dst_len") == 0
                ]
                if not default:
                    found.append(f"{spec.netns} has no IPv{ip.version} default route")
    except (OSError, NetlinkError) as exc:
        found.append(f"cannot look into {spec.netns}: {exc}")
    return found
