"""The timing primitive of the benchmarks and of ``backend="auto"``: interleaved rounds."""
import time
from typing import Any, Callable, Dict, List

__all__ = ["time_interleaved"]


def time_interleaved(runners: Dict[str, Callable[[Any], object]], x: Any, rounds: int,
                     calls: int, warmup: int = 2, pause: float = 0.02) -> Dict[str, List[float]]:
    """Seconds per call of each runner; every round runs each runner ``calls`` times in turn,
    each block after a short pause (the previous runner's spinning threads go to sleep) and one
    untimed call (caches and thread pools warm again). ``x`` is passed to every runner."""
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    times: Dict[str, List[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            time.sleep(pause)
            run(x)
            for _ in range(calls):
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
    return times
