"""Service governance: KPIs over the facts table, report exports, the QBR pack."""
