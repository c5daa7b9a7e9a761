"""A run's slot handed to its tasks: Python parameters bound to it (--slot-param), the
{slot:...} placeholders of YAML data node sources, and processor.slot() / DAGMILL_SLOT
in the modules and commands of a pipeline."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import dagmill
from dagmill.errors import DefinitionError, ParameterError
from dagmill.frontends.loader import check_slot_param, target_task
from dagmill.frontends.pipeline.compile import PipelineError, compile_pipeline
from dagmill.frontends.pipeline.source import fill_slot, placeholder_problem
from dagmill.model.params import ParameterValueError
from dagmill.model.runs import RunTarget
from dagmill.services.execution import RunOptions
from dagmill.services.pipelines import run_target, validate

# 00:30 in Paris is still the day before in UTC: the local date is the one that counts
SLOT = "2022-03-01T00:30:00+01:00"
UTC = dt.UTC


# -- Python parameters --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("param", "expected"),
    [
        (dagmill.DateParameter(), dt.date(2022, 3, 1)),
        (dagmill.DateTimeParameter(), dt.datetime(2022, 3, 1, 0, 30)),
        (dagmill.DateSecondParameter(), dt.datetime(2022, 3, 1, 0, 30)),
        (dagmill.DateMinuteParameter(), dt.datetime(2022, 3, 1, 0, 30)),
        (dagmill.DateHourParameter(), dt.datetime(2022, 3, 1, 0, 0)),
        (dagmill.Parameter(), SLOT),
        (dagmill.OptionalParameter(), SLOT),
    ],
)
def test_a_parameter_takes_the_slot_as_its_type_says(
    param: dagmill.Parameter, expected: object
) -> None:
    assert param.from_slot(SLOT) == expected


def test_the_date_is_the_local_one_not_the_utc_one() -> None:
    instant = dt.datetime.fromisoformat(SLOT)
    assert instant.astimezone(UTC).date() == dt.date(2022, 2, 28)
    assert dagmill.DateParameter().from_slot(SLOT) == dt.date(2022, 3, 1)
    # and on the other side of UTC: 23:30 in New York is the next day in UTC
    assert dagmill.DateParameter().from_slot("2022-03-01T23:30:00-05:00") == dt.date(2022, 3, 1)


@pytest.mark.parametrize(
    "param",
    [
        dagmill.IntParameter(),
        dagmill.FloatParameter(),
        dagmill.BoolParameter(),
        dagmill.ListParameter(),
        dagmill.DictParameter(),
        dagmill.ChoiceParameter(choices=["a", "b"]),
    ],
)
def test_other_types_cannot_take_the_slot(param: dagmill.Parameter) -> None:
    with pytest.raises(ParameterValueError):
        param.from_slot(SLOT)


def test_luigi_precisions_parse_and_serialize_as_luigi_does() -> None:
    hour = dagmill.DateHourParameter()
    assert hour.parse("2022-03-01T10") == dt.datetime(2022, 3, 1, 10)
    assert hour.serialize(hour.normalize(dt.datetime(2022, 3, 1, 10, 59, 3))) == "2022-03-01T10"
    minute = dagmill.DateMinuteParameter()
    assert minute.parse("2022-03-01T1005") == dt.datetime(2022, 3, 1, 10, 5)
    assert minute.serialize(minute.parse("2022-03-01T10:05:59")) == "2022-03-01T1005"
    second = dagmill.DateSecondParameter()
    assert second.serialize(second.parse("2022-03-01T100559")) == "2022-03-01T100559"


FLOWS = """\
import dagmill

class Daily(dagmill.tasks.TaskJson):
    day = dagmill.DateParameter()
    region = dagmill.Parameter(default="eu")

    def run(self):
        self.save({"day": self.day.isoformat()})

class Hourly(dagmill.tasks.TaskJson):
    hour = dagmill.DateHourParameter()
    n = dagmill.IntParameter(default=1)
    label = dagmill.DateParameter(default=None, significant=False)

    def run(self):
        self.save({"hour": self.hour.isoformat()})
"""


@pytest.fixture
def flows(tmp_path: Path) -> str:
    path = tmp_path / "slotflows.py"
    path.write_text(FLOWS)
    return str(path)


def test_a_scheduled_target_binds_its_slot_param(flows: str, tmp_path: Path) -> None:
    target = RunTarget("python", f"{flows}:Daily", {"day": SLOT}, str(tmp_path / "out"), slot=SLOT)
    task = target_task(target)
    assert task.day == dt.date(2022, 3, 1)  # type: ignore[attr-defined]
    result = run_target(target, RunOptions(execution_summary=False))
    assert result is not None and result.ok
    assert task.outputLoad() == {"day": "2022-03-01"}
    hourly = RunTarget("python", f"{flows}:Hourly", {"hour": SLOT}, None, slot=SLOT)
    assert target_task(hourly).hour == dt.datetime(2022, 3, 1, 0)  # type: ignore[attr-defined]


def test_check_slot_param_accepts_a_date_parameter(flows: str) -> None:
    check_slot_param(RunTarget("python", f"{flows}:Daily"), "day")
    check_slot_param(RunTarget("python", f"{flows}:Daily"), "region")  # the ISO string
    check_slot_param(RunTarget("python", f"{flows}:Hourly"), "hour")


def test_check_slot_param_names_a_missing_parameter(flows: str) -> None:
    with pytest.raises(
        ParameterError,
        match=r"Daily has no parameter 'dya' \(did you mean 'day'\?\); its parameters: "
        r"day, region",
    ):
        check_slot_param(RunTarget("python", f"{flows}:Daily"), "dya")


def test_check_slot_param_refuses_a_type_that_cannot_take_a_date(flows: str) -> None:
    with pytest.raises(
        ParameterError, match=r"Hourly: parameter 'n' is an int parameter .*cannot take the slot"
    ):
        check_slot_param(RunTarget("python", f"{flows}:Hourly"), "n")


def test_check_slot_param_refuses_a_parameter_outside_the_task_identity(flows: str) -> None:
    with pytest.raises(ParameterError, match=r"Hourly: parameter 'label' is not significant"):
        check_slot_param(RunTarget("python", f"{flows}:Hourly"), "label")


def test_check_slot_param_refuses_a_pipeline_file(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"processor\.slot\(\).*for Python tasks"):
        check_slot_param(RunTarget("yaml", str(tmp_path / "p.yaml")), "day")


# -- YAML placeholders --------------------------------------------------------------------
def test_placeholders_are_filled_from_the_slot_in_its_timezone() -> None:
    when = dt.datetime.fromisoformat(SLOT)
    assert fill_slot("raw/{slot:%Y-%m-%d}/x.csv", when) == "raw/2022-03-01/x.csv"
    assert fill_slot("at-{slot}.txt", when) == f"at-{SLOT}.txt"
    assert fill_slot("{{literal}}/{slot:%H:%M}.csv", when) == "{literal}/00:30.csv"
    assert fill_slot("plain.csv", when) == "plain.csv"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raw/{slto:%Y}.csv", r"unknown placeholder \{slto:\.\.\.\} \(did you mean \{slot:"),
        ("raw/{day}.csv", r"unknown placeholder \{day\}"),
        ("raw/{}.csv", r"unknown placeholder \{\}"),
        ("raw/{slot:%Y.csv", r"unbalanced braces"),
        ("raw/slot}.csv", r"unbalanced braces"),
        ("raw/{slot!r}.csv", r"malformed placeholder"),
    ],
)
def test_malformed_placeholders_are_named(source: str, message: str) -> None:
    found = placeholder_problem(source)
    assert found is not None
    assert re.search(message, found), found


def test_validate_reports_a_bad_placeholder_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "dataNodes:\n"
        "  raw:\n"
        "    source: raw.csv\n"
        "  out:\n"
        "    source: out/{slto:%Y-%m-%d}.csv\n"
        "processNodes:\n"
        "  step: {input: [raw], output: [out], processor: mod}\n"
    )
    with pytest.raises(PipelineError) as info:
        validate(str(pipeline))
    assert str(info.value) == (
        f"{pipeline}:5: dataNodes.out.source: unknown placeholder {{slto:...}} (did you mean "
        "{slot:...}?) in 'out/{slto:%Y-%m-%d}.csv': use {slot:FORMAT} (strftime, e.g. "
        "{slot:%Y-%m-%d}) or {slot}; {{ and }} are literal braces"
    )


# a module that writes what it was given: the slot, as processor.slot() and DAGMILL_SLOT
SHOW_SLOT = """\
import json, os
from dagmill import processor

when = processor.slot()
processor.save("out", {
    "slot": when.isoformat(),
    "env": os.environ["DAGMILL_SLOT"],
    "aware": when.tzinfo is not None,
    "raw": processor.load("raw"),
})
"""

PARTITIONED = """\
dataNodes:
  raw:
    source: raw/{slot:%Y-%m-%d}.txt
  out:
    source: out/{slot:%Y-%m-%d}.json
  stamp:
    source: stamp/{slot:%Y-%m-%dT%H}.txt
processNodes:
  show:
    input: [raw]
    output: [out]
    processor: show_slot
  stamp:
    output: [stamp]
    command: printf %s "$DAGMILL_SLOT" > "$DAGMILL_OUTPUT_0"
schedule:
  schedule_interval: "30 0 * * *"
  timezone: Europe/Paris
"""


@pytest.fixture
def partitioned(tmp_path: Path) -> Path:
    (tmp_path / "show_slot.py").write_text(SHOW_SLOT)
    (tmp_path / "p.yaml").write_text(PARTITIONED)
    for day in ("2022-03-01", "2022-03-02"):
        (tmp_path / "data" / "raw").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "raw" / f"{day}.txt").write_text(f"raw of {day}")
    return tmp_path / "p.yaml"


def _run(pipeline: Path, slot: str | None) -> dagmill.RunResult:
    data = str(pipeline.parent / "data")
    target = RunTarget("yaml", str(pipeline), {}, data, slot=slot)
    result = run_target(target, RunOptions(execution_summary=False))
    assert result is not None and result.ok, result and result.errors
    return result


def test_two_slots_write_two_partitions_and_each_is_complete_on_its_own(
    partitioned: Path,
) -> None:
    data = partitioned.parent / "data"
    first = _run(partitioned, SLOT)
    assert sorted(first.plan.to_run) == ["show", "stamp"]
    out = json.loads((data / "out" / "2022-03-01.json").read_text())
    assert out == {"slot": SLOT, "env": SLOT, "aware": True, "raw": "raw of 2022-03-01"}
    assert (data / "stamp" / "2022-03-01T00.txt").read_text() == SLOT
    assert dt.datetime.fromisoformat(out["slot"]).utcoffset() == dt.timedelta(hours=1)

    second_slot = "2022-03-02T00:30:00+01:00"
    second = _run(partitioned, second_slot)
    assert sorted(second.plan.to_run) == ["show", "stamp"]  # a new partition: it runs
    out2 = json.loads((data / "out" / "2022-03-02.json").read_text())
    assert out2["raw"] == "raw of 2022-03-02" and out2["env"] == second_slot
    assert (data / "out" / "2022-03-01.json").exists()  # the first partition stays

    # each partition is complete by itself: the first slot again runs nothing
    assert _run(partitioned, SLOT).plan.to_run == []
    assert _run(partitioned, second_slot).plan.to_run == []


def test_a_manual_run_uses_now_in_the_schedules_timezone(partitioned: Path) -> None:
    before = dt.datetime.now(UTC).replace(microsecond=0)
    compiled = compile_pipeline(str(partitioned), str(partitioned.parent / "data"))
    after = dt.datetime.now(UTC)
    when = dt.datetime.fromisoformat(compiled.slot)
    assert before <= when <= after
    paris = when.astimezone(ZoneInfo("Europe/Paris"))
    assert when.utcoffset() == paris.utcoffset()  # the schedule's timezone, not UTC
    outputs = {o.key: o.location for t in compiled.graph.tasks.values() for o in t.outputs}
    assert outputs["out"].endswith(f"out/{paris:%Y-%m-%d}.json")
    action = compiled.graph.tasks["show"].action
    assert getattr(action, "slot", None) == compiled.slot  # the module gets the same time


def test_a_pipeline_without_a_schedule_uses_utc_for_a_manual_run(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "dataNodes:\n  out: {source: 'out/{slot:%Y}.txt'}\n"
        "processNodes:\n  w: {output: [out], command: 'true'}\n"
    )
    compiled = compile_pipeline(str(tmp_path / "p.yaml"))
    assert dt.datetime.fromisoformat(compiled.slot).utcoffset() == dt.timedelta(0)


def test_a_manual_run_keeps_its_slot_so_running_it_again_redoes_the_same_partition(
    partitioned: Path,
) -> None:
    data = partitioned.parent / "data"
    # a manual run writes today's partition: give it the raw input it reads
    today = dt.datetime.now(ZoneInfo("Europe/Paris"))
    for day in {today, today + dt.timedelta(minutes=1)}:  # across midnight, either day
        (data / "raw" / f"{day:%Y-%m-%d}.txt").write_text("raw of today")
    first = _run(partitioned, None)
    recorded = dagmill.runs.get_run(first.run_id).target
    assert recorded is not None and recorded.slot is not None
    when = dt.datetime.fromisoformat(recorded.slot)
    assert (data / "out" / f"{when:%Y-%m-%d}.json").exists()
    # the recorded target (what `runs resume` and `runs rerun` start from) is that slot
    assert run_target(recorded, RunOptions(execution_summary=False)).plan.to_run == []  # type: ignore[union-attr]


def test_a_slot_without_an_offset_is_in_the_schedules_timezone(partitioned: Path) -> None:
    compiled = compile_pipeline(str(partitioned), slot="2022-07-01T00:30:00")
    assert compiled.slot == "2022-07-01T00:30:00+02:00"  # Paris, summer time


def test_a_slot_that_is_not_iso_is_refused(partitioned: Path) -> None:
    with pytest.raises(PipelineError, match=r"the run's slot 'yesterday' is not ISO 8601"):
        compile_pipeline(str(partitioned), slot="yesterday")
