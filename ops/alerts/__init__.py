"""Alerts: the local checks `ops alerts check` runs and the Cloud Monitoring policies `ops alerts gcp` manages."""
