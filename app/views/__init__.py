"""The dashboard pages: one short script per page, run by Streamlit (app/main.py routes to them)."""
