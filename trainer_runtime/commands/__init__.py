"""The ``trainer-runtime`` command: ``run`` (``standalone``: a ``pkg.mod:fn`` as a tracked job),
``doctor``, ``status`` and ``replay`` (``cli`` parses the arguments and dispatches).

May import: core, status, tracking, training, run.
"""
