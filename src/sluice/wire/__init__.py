"""The SLS wire protocol: codecs, compression, cursors, signing and the error tree. No I/O here."""
