"""Live servers for the tests: MLflow, storage emulator, metadata server, auth+fault proxy.

See tests/README.md for what each one does and how to drive it.
"""
