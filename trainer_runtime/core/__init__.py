"""The runtime's foundations: its typed configuration, every environment name, the error classes
with their exit codes, bounded retries, secret redaction and log set-up.

Owns nothing that talks to a server or a file. Everything else builds on it.

May import: nothing else of trainer_runtime.
"""
