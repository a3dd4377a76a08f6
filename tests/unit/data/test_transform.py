"""``transform``: DuckDB SQL with no file, network or extension access, and Polars steps whose
expressions are SQL (nothing is evaluated as Python)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from pydantic import ValidationError

from armillary.contracts.data_tasks import TransformParams
from armillary.data.tasks import apply_steps, run_sql


@pytest.fixture
def tables(tmp_path: Path) -> dict[str, Path]:
    orders = tmp_path / "orders.parquet"
    pl.DataFrame(
        {"id": [1, 2, 3, 4], "customer": ["a", "b", "a", "c"], "amount": [10.0, 5.5, 2.5, 7.0]}
    ).write_parquet(orders)
    customers = tmp_path / "customers.parquet"
    pl.DataFrame({"customer": ["a", "b", "c"], "country": ["FR", "DE", "FR"]}).write_parquet(
        customers
    )
    return {"clean_orders": orders, "customers": customers}


def test_sql_over_declared_inputs(tables: dict[str, Path]) -> None:
    result = run_sql(
        """
        SELECT c.country, sum(o.amount) AS total, count(*) AS n
        FROM clean_orders o JOIN customers c USING (customer)
        GROUP BY c.country ORDER BY c.country
        """,
        tables,
    )
    assert result.to_dicts() == [
        {"country": "DE", "total": 5.5, "n": 1},
        {"country": "FR", "total": 19.5, "n": 3},
    ]


def test_sql_result_may_be_empty(tables: dict[str, Path]) -> None:
    result = run_sql("SELECT * FROM customers WHERE country = 'XX'", tables)
    assert result.height == 0
    assert result.columns == ["customer", "country"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv_auto('/etc/hostname')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "COPY customers TO '{tmp}/stolen.csv'",
        "COPY (SELECT 1) TO '{tmp}/stolen.parquet' (FORMAT parquet)",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "EXPORT DATABASE '{tmp}/export'",
        "SELECT * FROM read_parquet('{orders}')",
    ],
)
def test_sql_cannot_touch_files_or_extensions(
    sql: str, tables: dict[str, Path], tmp_path: Path
) -> None:
    query = sql.format(tmp=tmp_path, orders=tables["clean_orders"])
    before = set(tmp_path.iterdir())
    with pytest.raises(duckdb.PermissionException) as caught:
        run_sql(query, tables)
    message = str(caught.value).lower()
    assert "disabled" in message
    assert set(tmp_path.iterdir()) == before  # nothing was written


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "SET python_enable_replacements = true",
    ],
)
def test_sql_cannot_unlock_the_configuration(sql: str, tables: dict[str, Path]) -> None:
    with pytest.raises(duckdb.Error, match="locked"):
        run_sql(f"{sql}; SELECT * FROM read_csv('/etc/passwd')", tables)  # noqa: S608


def test_sql_cannot_read_python_variables(tables: dict[str, Path]) -> None:
    secret_frame = pl.DataFrame({"secret": ["s3cr3t"]})  # a replacement scan would find it
    assert secret_frame.height == 1
    with pytest.raises(duckdb.CatalogException):
        run_sql("SELECT * FROM secret_frame", tables)
    with pytest.raises(duckdb.CatalogException):
        run_sql("SELECT * FROM tables", tables)  # a local of run_sql itself


def test_sql_syntax_errors_surface(tables: dict[str, Path]) -> None:
    with pytest.raises(duckdb.ParserException):
        run_sql("SELEC nope", tables)


def _frame() -> pl.LazyFrame:
    return pl.DataFrame(
        {"name": ["x", "y", "z", "w"], "a": [1, 2, 3, 4], "b": [10.0, 20.0, 30.0, 40.0]}
    ).lazy()


def test_polars_steps() -> None:
    spec = TransformParams.model_validate(
        {
            "inputs": ["raw"],
            "polars": [
                {"filter": "a >= 2 AND name <> 'z'"},
                {"with_columns": {"ratio": "b / a", "upper_name": "upper(name)"}},
                {"rename": {"b": "bee"}},
                {"drop": ["a"]},
                {"sort": ["ratio"], "descending": True},
                {"select": ["upper_name", "ratio", "bee"]},
                {"limit": 1},
            ],
        }
    )
    assert spec.polars is not None
    result = apply_steps(_frame(), spec.polars).collect()
    # y and w tie on ratio 10: the sort keeps their input order, so y comes first every time.
    assert result.to_dicts() == [{"upper_name": "Y", "ratio": 10.0, "bee": 20.0}]


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('id')",
        "eval('1')",
        "exec('import os')",
        "open('/etc/passwd')",
        "read_csv('/etc/passwd')",
    ],
)
def test_polars_expressions_are_sql_not_python(expression: str) -> None:
    spec = TransformParams.model_validate({"inputs": ["raw"], "polars": [{"filter": expression}]})
    assert spec.polars is not None
    with pytest.raises(pl.exceptions.PolarsError):
        apply_steps(_frame(), spec.polars).collect()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"inputs": ["a"]}, "exactly one of `sql` or `polars`"),
        ({"inputs": ["a"], "sql": "SELECT 1", "polars": [{"limit": 1}]}, "exactly one"),
        ({"inputs": [], "sql": "SELECT 1"}, "at least 1"),
        ({"inputs": ["a", "a"], "sql": "SELECT 1"}, "twice"),
        ({"inputs": ["a-b", "a_b"], "sql": "SELECT 1"}, "same table name"),
        ({"inputs": ["A"], "sql": "SELECT 1"}, "pattern"),
        ({"inputs": ["a", "b"], "polars": [{"limit": 1}]}, "exactly one input"),
        ({"inputs": ["a"], "polars": [{"explode": "x"}]}, "one of the keys"),
        ({"inputs": ["a"], "polars": [{"filter": "x > 1", "limit": 2}]}, "Extra inputs"),
        ({"inputs": ["a"], "polars": [{"limit": -1}]}, "greater than or equal"),
        ({"inputs": ["a"], "sql": "SELECT 1", "python": "x"}, "Extra inputs"),
    ],
)
def test_transform_params_are_checked(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TransformParams.model_validate(params)
