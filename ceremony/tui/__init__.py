"""The Textual front end of `ceremony run` and `ceremony rehearse --tui`.

One more loop around the engine (``next_prompt``/``submit``/``status``), like
ceremony.headless; screens hold no ceremony logic. Nothing here imports a device library
at module level: devices are built inside the worker that opens the token.
"""
