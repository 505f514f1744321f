"""Every data contract of the pipeline, in one place (import from the module that holds it).

- ``pipeline.schema.inputs``: the canonical columns of the sources (payments, service
  activities, customer attributes) and the metrics they allow;
- ``pipeline.schema.tables``: the reporting tables (names, columns, types, grain), the
  run record and the customer table;
- ``pipeline.schema.descriptions``: the descriptions BI tools show (``COMMENT ON``).
"""
