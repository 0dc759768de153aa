"""The audit trail, the bottom layer of cloud_api: any feature may write audit rows; this package imports no feature.

`trail` writes hash-chained audit_log rows in the caller's transaction, `chain` verifies the chain, `sql` holds the
one audit_log INSERT that the batched write paths embed in their own statements.
"""
