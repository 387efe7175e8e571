"""The built-in billing service: a small ledger behind the billing REST contract.

It stands in for the ERP a finance team would point Casebook at, with its own database
(never Casebook's) so the two can only talk over HTTP, as they would in production.
"""
