"""A stand-in for the ``dbruntime`` package that Databricks runtimes provide (only the part
MLflow's ``databricks_utils`` reads). Tests put its parent directory on ``sys.path`` and
describe the notebook's context in ``DBRUNTIME_STAND_IN_CONTEXT`` (JSON), so MLflow's real
code path runs — in the test process and in any Python it starts."""
