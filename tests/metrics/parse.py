"""Reads a Prometheus text exposition on stdin with the reference parser (the Python client's)
and prints its samples as JSON: [[sample name, {labels}, value, family name, family type], ...]."""
import json, sys
from prometheus_client.parser import text_string_to_metric_families

out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value, family.name, family.type])
json.dump(out, sys.stdout)
