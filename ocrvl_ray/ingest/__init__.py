"""Ingest: AI-Hub label readers (``readers``), huge-file streaming (``files``), the image lookup index
(``lookup``) and ``prepare`` (labels -> Parquet manifest of pages). No Ray import at package import."""
