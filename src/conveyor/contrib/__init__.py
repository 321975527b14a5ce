"""Integrations: uWSGI Spooler compatibility (`conveyor.contrib.uwsgi`), Flask
(`conveyor.contrib.flask`) and Django (`conveyor.contrib.django`).

Each module imports its framework only when used, so none of them is a dependency of conveyor
itself: install the matching extra (`pip install 'conveyor[flask]'`, `'conveyor[django]'`).
"""
