"""Tests that run inside ``.venv-erniekit`` (the fork's environment), started by tests/test_train_erniekit.py."""
