"""Files dropped into the workspace are live in seconds: the watchdog child process reports
changes (`watcher`, `watcher_child`) and the reloader (`reload`) rebuilds skills, knowledge or
config.yaml and swaps each whole; a broken file is reported, the last good one keeps running.
"""
