"""Sphinx configuration for the kvfs documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "kvfs"
author = "the kvfs developers"
copyright = "2026, the kvfs developers"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Optional backend clients may be missing when the docs are built.
autodoc_mock_imports = ["redis", "sqlalchemy", "boto3", "botocore", "google", "mfusepy", "click"]
intersphinx_mapping = {}
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
