"""Task classes by output kind (``dagmill.tasks.TaskPqPandas``, like ``d6tflow.tasks``)."""

from dagmill.frontends.classes import (
    ExternalTask,
    Task,
    TaskCache,
    TaskCachePandas,
    TaskCSVGZPandas,
    TaskCSVPandas,
    TaskData,
    TaskExcelPandas,
    TaskJson,
    TaskPickle,
    TaskPqPandas,
)

__all__ = [
    "ExternalTask",
    "Task",
    "TaskCSVGZPandas",
    "TaskCSVPandas",
    "TaskCache",
    "TaskCachePandas",
    "TaskData",
    "TaskExcelPandas",
    "TaskJson",
    "TaskPickle",
    "TaskPqPandas",
]
