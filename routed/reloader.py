"""`routed reload` (and SIGHUP): read the config file again and apply the difference.

routed.config.reload decides what a new config changes; here every service takes it through
one Protocol, `reconfigure(cfg, plan)`, in the order the daemon lists them. An invalid file, or
a change only a restart can make, leaves everything as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from routed import service
from routed.api import ApiError
from routed.config import ConfigError, NodeConfig, load_config
from routed.config.reload import ReloadPlan, plan_reload
from routed.log import event

log = logging.getLogger("routed.daemon")


class Reconfigurable(Protocol):
    async def reconfigure(self, cfg: NodeConfig, plan: ReloadPlan) -> None: ...


class Applied:
    """A reconfigure step made of a function (a service that is not routed's own class)."""

    def __init__(self, apply: Callable[[NodeConfig, ReloadPlan], Awaitable[None] | None]) -> None:
        self.apply = apply

    async def reconfigure(self, cfg: NodeConfig, plan: ReloadPlan) -> None:
        if (pending := self.apply(cfg, plan)) is not None:
            await pending


def _listed(value: Any) -> Any:
    return ",".join(value) if isinstance(value, list) else value


class Reloader:
    def __init__(
        self,
        path: str | None,
        current: Callable[[], NodeConfig],
        services: Sequence[Reconfigurable],
        kernel: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.path = path  # None: started without a file, nothing to reload
        self.current = current
        self.services = services
        # what a reload reads again from the kernel, config changed or not (the fabric's MTU):
        # returns what it found changed and applied, as "what: old -> new"
        self.kernel = kernel
        self._lock = asyncio.Lock()

    async def reload(self) -> dict[str, Any]:
        async with self._lock:
            new, plan = self._plan()
            summary = plan.summary()
            if not plan.empty:
                log.info(event("reload", file=self.path, **{k: _listed(v) for k, v in summary.items()}))
                for each in self.services:
                    await each.reconfigure(new, plan)
                service.notify(f"STATUS=config reloaded: {', '.join(plan.changed)}")
            noticed = await self.kernel() if self.kernel is not None else []
            if noticed:
                summary["kernel"] = noticed
                log.info(event("reload_kernel", file=self.path, changed=_listed(noticed)))
            elif plan.empty:
                log.info(event("reload", file=self.path, changed="nothing"))
            return summary

    def _plan(self) -> tuple[NodeConfig, ReloadPlan]:
        """The file's config and what applying it means; ApiError (exit 2, logged) if it cannot be."""
        if self.path is None:
            raise ApiError("this daemon was started without a config file; nothing to reload", 2)
        try:
            new = load_config(self.path)
        except ConfigError as exc:
            log.error(event("reload_refused", file=self.path, reason="invalid", problems=str(exc)))
            raise ApiError(
                f"{exc}\nrouted: the running config is kept; fix the file and reload again", 2
            ) from exc
        plan = plan_reload(self.current(), new)
        if plan.refused:
            log.error(event("reload_refused", file=self.path, needs_restart=";".join(plan.refused)))
            raise ApiError(
                f"{self.path}: a reload cannot change {'; '.join(plan.refused)}. Nothing was "
                "changed: restart routed to apply it (`systemctl restart routed`; peers keep our routes "
                "through graceful restart)",
                2,
            )
        return new, plan
