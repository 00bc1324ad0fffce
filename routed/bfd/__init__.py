"""BFD (RFC 5880/5881, single hop, asynchronous mode). The packet codec and the session state
machine are pure; the process that owns the UDP sockets comes with issue 17's part 1."""
