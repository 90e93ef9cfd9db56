"""The project's pipelines, one module per DAG."""
