"""The MLflow side of a run: auth (Google ID tokens through MLflow's header-provider plugin), the
preflight, the run itself (experiment, run, attempts of a retried task), every request the runtime
sends on its own bounded policy (``rest``), and the logger: queue, spool on disk, sender, the spool
shipped beside the status during an outage, system metrics.

May import: core, status.
"""
