"""Room hosts: many rooms' relays per process, for ``agent.job_executor = "shared"``."""

from .pool import HostPool, NoRoomHostError

__all__ = ["HostPool", "NoRoomHostError"]
