"""One run, start to end, on every wiring and replica: ``session.run_session`` runs the lifecycle
(signals, the training, the decision by ``outcome``, the close); ``cluster`` says which replica this
is, ``chief`` opens and closes the tracked run (preflight, logger, heartbeat; ``closing`` ends it
inside one budget), ``replica`` records how a replica that does not track ended; ``signals`` turns
SIGTERM/SIGINT into a decided end inside a close budget, and ``exits.exit_with`` is the one way a
process leaves for a run.

May import: core, status, tracking, training.
"""
