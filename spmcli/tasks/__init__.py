"""What one image goes through in each command: a frozen, picklable settings
object and a top-level function ``(task, settings, progress) -> record fields``
per command, run by :mod:`spmcli.batch` in this process, in worker processes or
on a Dask cluster.

This layer reads and writes files and calls the numeric core; it knows nothing
of Click or progress bars (``progress`` is an optional callback), so a worker
process needs neither.
"""
