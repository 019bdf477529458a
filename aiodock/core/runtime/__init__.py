"""Task runtime (containerd's runtime v2 role): bundles, per-container shims, restart recovery."""

from aiodock.core.runtime.tasks import TaskInfo, TaskManager, TaskSpec

__all__ = ["TaskInfo", "TaskManager", "TaskSpec"]
