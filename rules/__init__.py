"""Pure judgement: no Prefect, boto3, httpx or database imports (tests/test_rules_are_pure.py)."""
