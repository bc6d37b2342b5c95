"""Streamlit dashboard: reads the worker API and draws (lands with its issue)."""
