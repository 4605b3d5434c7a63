"""The headless EncTalk client core.

:class:`~enctalk.client.core.Client` is the one object front ends use: its
methods block with timeouts and are safe to call from any thread, and it
reports what happens through a :class:`queue.Queue` of
:class:`~enctalk.client.events.Event` objects.
"""
