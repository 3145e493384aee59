"""Suite-wide settings: no test may depend on how fast the machine is."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Hypothesis's defaults time each example (a 200 ms deadline) and each data generation (the
# too_slow health check): both fail on a loaded machine while the code under test is right.
# Property tests here judge behaviour only; settings(...) in a test module inherit this profile.
settings.register_profile(
    "fanmill", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("fanmill")
