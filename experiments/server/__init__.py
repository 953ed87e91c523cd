"""A shared MLflow tracking server on PostgreSQL (``service``), and the audit of a sweep's
runs in a store (``audit``)."""
