"""What a platform reads to learn a run's fate: ``mlflow_status.json`` and ``mlflow_info.json``
(``reporter``), written atomically to a local dir or ``gs://`` (``storage``), and read back for
people by ``trainer-runtime status`` (``view``).

May import: core.
"""
