"""User code whose process teardown is slow (the standalone command must still exit right after the close)."""
import time


def slow_teardown():
    """Leaves a non-daemon thread and an atexit handler that would hold the process 30 s after it
    returns (what TF's, Beam's or a user's teardown does, at worst)."""
    import atexit
    import threading

    atexit.register(time.sleep, 30)
    threading.Thread(target=time.sleep, args=(30,), daemon=False).start()


def slow_teardown_then_fail():
    slow_teardown()
    raise ValueError("user code failed")
