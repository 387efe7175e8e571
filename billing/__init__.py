"""The billing system Casebook works against: the port, its HTTP adapter, the built-in service.

`contract` is what activities depend on; `http_adapter` speaks the REST contract documented
in docs/billing-openapi.yaml (point it at an ERP gateway); `service` is the embedded default
that implements that contract with its own tables.
"""
