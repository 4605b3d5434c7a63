"""EncTalk cryptography: AEAD, KDFs, keys, X3DH, Double Ratchet, backup, vault.

No module here opens sockets or touches Tk, and only :mod:`enctalk.crypto.vault`
does file I/O (it reads and atomically rewrites the vault file).
"""
