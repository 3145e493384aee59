"""The one compiled part of fanmill: cache/_cfollow.c (the rest of the metadata is in pyproject.toml).

optional=True: where it cannot be built (no C compiler), the install goes on and cache/follow.py
runs the same loop in Python, at a cost: `python -m bench.cache.crc_speed play --opens 8` (the bench
trace on 8 opens of one file in one process) under callgrind takes 110k instructions an operation
with the Python loop and 59.5k with this one (20,000 operations, minus --ops 0).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("cache._cfollow", ["cache/_cfollow.c"], optional=True)])
