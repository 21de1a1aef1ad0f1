"""rules/ is pure judgement: no Prefect, AWS, HTTP or database imports."""

import ast
from pathlib import Path

FORBIDDEN = {"prefect", "prefect_aws", "prefect_gcp", "boto3", "botocore", "httpx", "requests",
             "psycopg", "sqlalchemy", "google"}


def test_rules_import_nothing_with_side_effects():
    offenders = []
    for path in Path(__file__).parent.parent.joinpath("rules").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
