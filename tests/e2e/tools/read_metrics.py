"""Reads an OpenMetrics exposition on stdin with prometheus_client's OpenMetrics parser
(the reference parser: it rejects what a Prometheus server would reject) and prints what
it read, one tab-separated line per family and per sample, for tests/e2e/metrics.rs:

    family  NAME  TYPE  UNIT
    sample  NAME  VALUE  LABEL  VALUE  LABEL  VALUE ...

A parse error ends it with a traceback and a non-zero status.
"""

import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def field(text):
    if "\t" in text or "\n" in text:
        raise SystemExit(f"a name or label with a tab or newline: {text!r}")
    return text


def main():
    for family in text_string_to_metric_families(sys.stdin.read()):
        print("family", field(family.name), family.type, field(family.unit), sep="\t")
        for sample in family.samples:
            line = ["sample", field(sample.name), repr(float(sample.value))]
            for key, value in sorted(sample.labels.items()):
                line += [field(key), field(value)]
            print(*line, sep="\t")


main()
