"""One tracked run, start to end: ``session.run_tracked`` opens it (preflight, status, logger,
heartbeat), runs the training, and is where the outcome is decided (``outcome``) and recorded on
every path; ``closing`` ends the MLflow run inside one budget; ``signals`` turns SIGTERM/SIGINT into
a decided end and bounds the exit; ``cluster`` says which replica this is and ``replica`` how one
that does not track ends.

May import: core, status, tracking, training.
"""
