"""Prometheus metrics: the counters, gauges and histograms every layer bumps, and the text
a scrape of ``/metrics`` reads, summed over every worker process.

May import: mailwright.core (and prometheus_client).
"""
