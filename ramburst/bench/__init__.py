"""`ramburst bench`: each data path measured next to plain tmpfs in the same run.

One small unit per path (tmpfs, pool, s3, fs), each returning Rows; report.py turns rows
into the table, JSON and plot.
"""
