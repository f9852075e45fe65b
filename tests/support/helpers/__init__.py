"""Helpers shared by the test suite: op inputs (op_cases), device runs and exact CUDA inputs (cuda_cases), image
fixtures (images), tiny run configs (configs)."""
