"""The EncTalk server: event loop, request handlers, SQLite store, admin commands.

Start one in-process with :class:`server.app.Server` and a
:class:`server.config.ServerConfig`, or run ``python run_server.py``.
"""
