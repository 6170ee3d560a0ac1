"""The Table-API calls that depend on which Java thread py4j serves them on, made safe on any: the
planner's translations (Table -> DataStream, a statement set attached to the stream graph) and
loading the job's Java functions (`create_java_function`).

Why this exists: the planner's Calcite metadata queries read their provider from a ThreadLocal
(`RelMetadataQueryBase.THREAD_PROVIDERS`) that Flink sets only on the thread that created the
TableEnvironment (apache/flink PR 20655, FLINK-23020, never merged). py4j serves a Python thread's
calls on any of its pooled connections, one Java thread each, and which one it takes changes when
another Python thread (a producer, a garbage-collection callback) used the gateway at the same
moment. A translation served on a thread that never created a TableEnvironment then fails with
"NullPointerException: metadataHandlerProvider", and so does every later one of that environment
(the broken metadata query stays cached in its planner): an intermittent failure of any test or
tool that builds jobs while other threads run (CI saw it once in 500 tests). So each translation
first sets the provider on the thread serving it and drops the cached query and, should py4j
switch threads between those calls and the translation, is retried.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar, Union

from py4j.protocol import Py4JJavaError
from pyflink.java_gateway import get_gateway

from jobs.kafka_tables import sql_quote

if TYPE_CHECKING:
    from pyflink.common.typeinfo import TypeInformation
    from pyflink.datastream import DataStream
    from pyflink.table import StreamTableEnvironment, Table

log = logging.getLogger(__name__)
T = TypeVar("T")
# A statement of a statement set: (sink table name, Table) or an INSERT statement in SQL.
Insert = Union[tuple[str, "Table"], str]
ATTEMPTS = 4
SYMPTOM = "metadataHandlerProvider"


def set_metadata_provider(t_env: StreamTableEnvironment) -> None:
    """Set Flink's Calcite metadata provider on the Java thread serving this call, as creating a
    TableEnvironment does on its own thread. Reflection through the planner's class loader: the
    planner (and Calcite with it) is loaded apart from the user class path."""
    gateway = get_gateway()
    jvm = gateway.jvm
    planner = t_env._j_tenv.getPlanner()
    loader = planner.getClass().getClassLoader()

    def cls(name: str):  # type: ignore[no-untyped-def]
        return jvm.java.lang.Class.forName(name, True, loader)

    flink_default = cls("org.apache.flink.table.planner.plan.metadata.FlinkDefaultRelMetadataProvider").getMethod(
        "INSTANCE", gateway.new_array(jvm.java.lang.Class, 0)).invoke(None, gateway.new_array(jvm.java.lang.Object, 0))
    param_types = gateway.new_array(jvm.java.lang.Class, 1)
    param_types[0] = cls("org.apache.calcite.rel.metadata.RelMetadataProvider")
    args = gateway.new_array(jvm.java.lang.Object, 1)
    args[0] = flink_default
    provider = cls("org.apache.calcite.rel.metadata.JaninoRelMetadataProvider").getMethod("of", param_types).invoke(
        None, args)
    thread_providers = cls("org.apache.calcite.rel.metadata.RelMetadataQueryBase").getField(
        "THREAD_PROVIDERS").get(None)
    # A metadata query made on a thread without the provider (`sql_query` on one, say) stays cached
    # in the planner's cluster and fails every later translation: drop it, so that the translation
    # makes its own on the thread below.
    planner.plannerContext().getCluster().invalidateMetadataQuery()
    thread_providers.set(provider)  # the last call before the translation: the thread it runs on


def planned(t_env: StreamTableEnvironment, translate: Callable[[], T], what: str = "translation") -> T:
    """`translate()` (one planner translation, retry-safe: it must leave nothing half done on
    failure) with the metadata provider set on its Java thread; retried if py4j served it on
    another thread after all. Any other error is raised at once."""
    for attempt in range(1, ATTEMPTS + 1):
        set_metadata_provider(t_env)
        try:
            return translate()
        except Py4JJavaError as e:
            if SYMPTOM not in str(e) or attempt == ATTEMPTS:
                raise
            log.warning("%s served on a Java thread without the planner's metadata provider (attempt %d of %d); "
                        "retrying", what, attempt, ATTEMPTS)
    raise AssertionError("unreachable")


def to_data_stream(t_env: StreamTableEnvironment, table: Table) -> DataStream:
    """`t_env.to_data_stream(table)`, planned safely."""
    return planned(t_env, lambda: t_env.to_data_stream(table), "to_data_stream")


def to_append_stream(t_env: StreamTableEnvironment, table: Table, type_info: TypeInformation) -> DataStream:
    """`t_env.to_append_stream(table, type_info)`, planned safely."""
    return planned(t_env, lambda: t_env.to_append_stream(table, type_info), "to_append_stream")


def create_java_function(t_env: StreamTableEnvironment, name: str, class_name: str) -> None:
    """A temporary system function implemented by `class_name` (one of the job's jars).

    Not `t_env.create_java_temporary_system_function`: PyFlink loads the class through the context
    class loader of whichever Java thread py4j serves that call on, which holds the job's jars only
    on some threads ("ClassNotFoundException: rerank.udf.Pseudonym", seen in CI). In SQL the
    planner loads it through the environment's own user class loader (`runner.table_settings`).
    """
    t_env.execute_sql(f"CREATE TEMPORARY SYSTEM FUNCTION {name} AS '{sql_quote(class_name)}' LANGUAGE JAVA")


def attach_inserts(t_env: StreamTableEnvironment, inserts: Sequence[Insert]) -> None:
    """One statement set of `inserts`, attached to the stream graph (the job's sinks).

    A failed `attach_as_datastream` empties its statement set, so each attempt builds a new one.
    """
    if not inserts:
        raise ValueError("attach_inserts: no statements")

    def attach() -> None:
        statements = t_env.create_statement_set()
        for insert in inserts:
            if isinstance(insert, str):
                statements.add_insert_sql(insert)
            else:
                statements.add_insert(*insert)
        statements.attach_as_datastream()

    planned(t_env, attach, "attach_as_datastream")
