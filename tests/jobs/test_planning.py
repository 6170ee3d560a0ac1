"""Planner translations on a Java thread that never created a TableEnvironment (jobs/planning.py).

py4j serves a call on a pooled connection, one Java thread each, and opens a new one when none
is idle (another Python thread holds them). The tests make that happen on purpose: they park
every idle connection, so that the calls inside are served by a Java thread opened for them,
which has never planned anything (in CI it happened by chance).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
from py4j.protocol import Py4JJavaError
from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from jobs.planning import SYMPTOM, attach_inserts, create_java_function, planned, to_append_stream, to_data_stream

ROW = Types.ROW([Types.STRING(), Types.LONG()])


def java_thread() -> str:
    return get_gateway().jvm.java.lang.Thread.currentThread().getName()


@contextmanager
def on_new_java_thread() -> Iterator[None]:
    """While inside, this thread's py4j calls are served by a Java thread opened for them: every
    idle connection of the gateway's pool is parked (py4j's own deque), so the first call opens a
    new connection and the later ones reuse it; the parked ones come back on exit."""
    before = java_thread()
    pool = get_gateway()._gateway_client.deque
    parked = []
    while pool:
        parked.append(pool.pop())
    try:
        assert java_thread() != before, "py4j did not switch Java threads; the test proves nothing"
        yield
    finally:
        pool.extendleft(parked)  # back in their order, left of the new one


@pytest.fixture
def env() -> StreamExecutionEnvironment:
    return StreamExecutionEnvironment.get_execution_environment()


@pytest.fixture
def t_env(env) -> StreamTableEnvironment:
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql("CREATE TEMPORARY TABLE src (a STRING, b BIGINT) WITH ('connector' = 'datagen')")
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (a STRING, b BIGINT) WITH ('connector' = 'blackhole')")
    return t_env


def test_a_bare_translation_on_a_new_java_thread_fails(t_env):
    """The condition the module exists for (should a Flink upgrade fix it, this test says so)."""
    with on_new_java_thread(), pytest.raises(Py4JJavaError, match=SYMPTOM):
        t_env.to_append_stream(t_env.sql_query("SELECT a, b FROM src WHERE b > 1"), ROW)


def test_translations_on_a_new_java_thread_succeed(env, t_env):
    with on_new_java_thread():
        stream = to_append_stream(t_env, t_env.sql_query("SELECT a, b FROM src WHERE b > 1"), ROW)
    assert stream.get_type() is not None
    with on_new_java_thread():
        to_data_stream(t_env, t_env.sql_query("SELECT a, b FROM src WHERE b > 2"))
    with on_new_java_thread():
        attach_inserts(t_env, ["INSERT INTO sink SELECT a, b FROM src WHERE b > 3",
                               ("sink", t_env.sql_query("SELECT a, b FROM src WHERE b > 4"))])
    plan = env.get_execution_plan()
    assert plan.count("Writer") == 2 and "b > 3" in plan and "b > 4" in plan, plan


def test_planned_retries_only_the_symptom(t_env):
    jvm = get_gateway().jvm
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Py4JJavaError("translate", jvm.java.lang.NullPointerException(SYMPTOM))
        return "translated"

    assert planned(t_env, flaky) == "translated" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise Py4JJavaError("translate", jvm.java.lang.IllegalStateException("something else"))

    calls.clear()
    with pytest.raises(Py4JJavaError, match="something else"):
        planned(t_env, broken)
    assert len(calls) == 1

    def always() -> None:
        raise Py4JJavaError("translate", jvm.java.lang.NullPointerException(SYMPTOM))

    with pytest.raises(Py4JJavaError, match=SYMPTOM):
        planned(t_env, always)


def test_attach_inserts_refuses_an_empty_set(t_env):
    with pytest.raises(ValueError, match="no statements"):
        attach_inserts(t_env, [])


def test_a_java_function_from_the_jobs_jar_loads_on_a_new_java_thread():
    """PyFlink's create_java_temporary_system_function loads the class through the serving Java
    thread's context class loader, which lacks the job's jars on a fresh thread; the SQL form
    loads it through the environment's user class loader."""
    from jobs.config import JobConfig
    from jobs.runner import create_env, table_settings
    from udfs.identity import FUNCTION_CLASS as PSEUDONYM_CLASS

    cfg = JobConfig(pseudonymize_key="env:RERANK_TEST_UNUSED")  # a job that ships the Java functions
    t_env = StreamTableEnvironment.create(create_env(cfg), environment_settings=table_settings(cfg))
    with on_new_java_thread(), pytest.raises(Py4JJavaError, match="ClassNotFoundException"):
        t_env.create_java_temporary_system_function("BARE", PSEUDONYM_CLASS)
    with on_new_java_thread():
        create_java_function(t_env, "PSEUDONYM", PSEUDONYM_CLASS)
    # Usable: a query calling it plans (its result type comes from the loaded class).
    table = t_env.sql_query("SELECT PSEUDONYM('someone', 'key') AS p")
    assert table.get_schema().get_field_names() == ["p"]
