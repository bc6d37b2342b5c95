"""The Streamlit dashboard: reads the worker's read API over HTTP and draws (see `dashboard/app.py`)."""
