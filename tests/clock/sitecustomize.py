"""The wall clock moved by SHOP_TEST_CLOCK_SHIFT_DAYS in every Python process that starts with this folder on its path.

`make test-ahead` puts it on PYTHONPATH, so pytest, its workers, the launcher, its actors (forked: they keep
the shift) and the stand-ins all read the same later date, and the suite shows what real time would overtake.
Only the wall clock moves (time.time, datetime.now, date.today, …, through time-machine); the monotonic clock,
sleeps and timed waits are the machine's own. Without the variable this file does nothing.
"""

import os
import time

_days = os.environ.get("SHOP_TEST_CLOCK_SHIFT_DAYS")
if _days:
    import time_machine

    time_machine.travel(time.time() + float(_days) * 86400, tick=True).start()
    # time-machine's clock starts ticking at its first reading: read it now, or every process would lag behind
    # the others by however long it took to its own first reading.
    time.time()
