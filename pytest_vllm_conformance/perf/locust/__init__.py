"""Load runs with locust: the shipped locustfile and the report of its CSV files.

Nothing here is imported by the plugin; locust (and gevent) load only when locust runs.
"""

from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
