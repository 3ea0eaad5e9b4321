"""Performance: load levels, latency and memory measurement, SLOs, locust runs."""
