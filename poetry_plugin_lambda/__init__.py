"""poetry-plugin-lambda: `poetry lambda-bundle` turns a Poetry project into an AWS Lambda ZIP.

Kept empty of imports: the package is imported on every `poetry` command a user runs.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
