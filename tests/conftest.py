"""Settings for every test: none may fail because the machine is busy.

Hypothesis fails an example that runs over its 200 ms deadline, which a loaded machine
turns into a failure of a correct test; property tests here check behaviour, not speed
(speed lives in bench/), so they run without a deadline.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("tumbler", deadline=None)
settings.load_profile("tumbler")
