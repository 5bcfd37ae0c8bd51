"""A small Django project for the bench: one view renders a template from a
50-row sqlite query (the app-bound "Django" workload). The database file is
named by BENCH_DJANGO_DB; `python -m djangoapp.setup_db` creates it."""
