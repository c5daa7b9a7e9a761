"""The pipeline language as pydantic models (and so as a JSON Schema).

Accepted verbatim from Allonia's format (``dataNodes``, ``processNodes`` with ``input`` /
``output`` / ``processor``, ``schedule`` with ``schedule_interval``, ``start_date``,
``end_date``, ``timezone``, and ``requirement``), plus optional extensions: ``params``,
``env``, ``resources``, ``retries``, ``timeout``, ``after``, ``command`` on process nodes;
``format`` and ``options`` on data nodes; ``schedule.every`` (start date + period).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["FORMATS", "DataNode", "PipelineSpec", "ProcessNode", "Requirement", "Schedule"]

FORMATS = ("csv", "parquet", "json", "pickle", "text", "bytes")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^(==|>=|<=|~=|!=|<|>)?\s*[0-9][0-9A-Za-z.*+!-]*$")
_EVERY = re.compile(r"^([1-9][0-9]*)\s*(s|m|h|d|w)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class DataNode(_Strict):
    """A dataset: where it is (relative to the data root, absolute, or a URL) and how."""

    source: str = Field(min_length=1, description="Path or URL of the data.")
    format: Literal["csv", "parquet", "json", "pickle", "text", "bytes"] | None = Field(
        None, description="How processor.load/save read and write it (default: from the suffix)."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Reader/writer options.")


class ProcessNode(_Strict):
    """A step: a Python module (``processor``) or a shell ``command`` from inputs to outputs."""

    input: list[str] = Field(default_factory=list, description="Data nodes it reads.")
    output: list[str] = Field(default_factory=list, description="Data nodes it writes.")
    processor: str | None = Field(None, description="Module: my_module(.py) beside the file.")
    command: str | None = Field(None, description="A shell command instead of a module.")
    params: dict[str, Any] = Field(default_factory=dict, description="Values for the module.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables.")
    resources: dict[str, str | int | float] = Field(
        default_factory=dict, description="cpu (2, 500m), memory (512Mi, 4Gi), gpu (1)."
    )
    retries: int = Field(0, ge=0, description="Attempts after a failure (backoff doubles).")
    timeout: float | None = Field(None, gt=0, description="Seconds; none unless given.")
    after: list[str] = Field(default_factory=list, description="Process nodes to run after.")

    _lists = field_validator("input", "output", "after", mode="before")(_as_list)

    @model_validator(mode="after")
    def _one_action(self) -> ProcessNode:
        if (self.processor is None) == (self.command is None):
            raise ValueError("give exactly one of processor (a module) or command")
        return self


class Schedule(_Strict):
    """When a job built from the pipeline runs: a cron expression, or a start and a period."""

    schedule_interval: str | None = Field(None, description='Cron, e.g. "5 10 * * *".')
    every: str | None = Field(None, description="A period from start_date: 30m, 1h, 1d, 1w.")
    start_date: str | None = Field(None, description='"2022-01-01 00:00" (in timezone).')
    end_date: str | None = Field(None, description="No run after this date.")
    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Paris.")

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _date_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 2022-01-01 as a date: take it as written
        import datetime as dt

        if isinstance(v, dt.datetime):
            return v.strftime("%Y-%m-%d %H:%M:%S")
        return v.isoformat() if isinstance(v, dt.date) else v

    @field_validator("every")
    @classmethod
    def _every(cls, v: str | None) -> str | None:
        if v is not None and not _EVERY.match(v.strip()):
            raise ValueError(f"expected a period like 30m, 1h, 1d or 1w, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_rule(self) -> Schedule:
        if (self.schedule_interval is None) == (self.every is None):
            raise ValueError("give exactly one of schedule_interval (cron) or every")
        if self.every is not None and self.start_date is None:
            raise ValueError("every needs a start_date to count from")
        return self


class Requirement(_Strict):
    """A package the pipeline's modules need, installed in its own environment."""

    name: str
    version: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"not a package name: {v!r}")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        if v is not None and not _VERSION.match(v.strip()):
            raise ValueError(f"not a version or version range: {v!r} (e.g. 1.5.3 or >=1.5)")
        return v

    def spec(self) -> str:
        """As pip writes it: ``pandas==1.5.3``, ``pandas>=1.5``, ``pandas``."""
        if self.version is None:
            return self.name
        v = self.version.strip()
        return f"{self.name}{v}" if v[0] in "=<>~!" else f"{self.name}=={v}"


class PipelineSpec(_Strict):
    """A pipeline: datasets, the steps between them, and when and where it runs."""

    dataNodes: dict[str, DataNode] = Field(default_factory=dict)
    processNodes: dict[str, ProcessNode] = Field(min_length=1)
    schedule: Schedule | None = None
    requirement: list[Requirement] = Field(default_factory=list)
