"""Contracts every stage shares: errors, records and Arrow schemas, the LMDB key layout, skip reasons,
the config loader (erniekit-compatible ``key=value``) and connecting to Ray. Imports nothing else of ocrvl_ray."""
