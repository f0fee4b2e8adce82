"""A well-behaved standalone training entry point (no TF, so the CLI tests stay fast)."""
import sys
import time


def build_model():
    return object()


def train():
    return build_model()


def main():
    print(f"argv={sys.argv!r}")
    train()


def sleep_long():
    time.sleep(120)
