"""Operating a gateway from outside its process: start, stop and find it (`control`), ask
whether it answers (`probe`), check an install (`doctor`) and know which library releases break
it (`known_bad`). Nothing here imports gevent: the CLI and the tray use it in plain Python.
"""
