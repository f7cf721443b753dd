"""Triage: alert rules as validated configuration, NEWS2, and the alerts they raise (one per patient and condition)."""
