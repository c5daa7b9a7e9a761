"""Task classes by output kind (``dagmill.tasks.TaskPqPandas``, like ``d6tflow.tasks``)."""

from dagmill.frontends.classes import (
    ExternalTask,
    Task,
    TaskCache,
    TaskCachePandas,
    TaskCSVPandas,
    TaskData,
    TaskJson,
    TaskPickle,
    TaskPqPandas,
)

__all__ = [
    "ExternalTask",
    "Task",
    "TaskCSVPandas",
    "TaskCache",
    "TaskCachePandas",
    "TaskData",
    "TaskJson",
    "TaskPickle",
    "TaskPqPandas",
]
