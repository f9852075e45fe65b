"""Helpers shared by the test suite: op inputs (op_cases), image fixtures (images), tiny run configs (configs)."""
