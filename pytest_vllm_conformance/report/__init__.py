"""Outputs: results document, HTML, OpenMetrics, certification bundle, matrix."""
