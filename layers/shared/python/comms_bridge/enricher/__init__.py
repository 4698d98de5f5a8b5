"""Pipeline 2, the errors enricher (alerter): trigger, error grouping, summary, alerts and its runtime."""
