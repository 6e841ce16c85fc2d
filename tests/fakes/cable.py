"""A loopback TCP forwarder that can be unplugged: the network between nbpipe and its remote
cache going down, at any moment, also in the middle of a build.

    with Cable(("127.0.0.1", moto_port)) as cable:   # point the client at cable.url
        cable.unplug()   # open connections are cut; new ones are accepted and closed at once
        cable.plug()     # traffic flows again

Bytes pass through unchanged (the Host header and so S3 signatures stay valid).
"""

from __future__ import annotations

import socket
import threading


class Cable:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.plugged = True
        self.cut = 0  # connections cut or refused while unplugged
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="cable")

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Cable:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()
        self.unplug()

    def unplug(self) -> None:
        with self._lock:
            self.plugged = False
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def plug(self) -> None:
        with self._lock:
            self.plugged = True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self.plugged:
                    self.cut += 1
                    _close(client)
                    continue
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    _close(client)
                    continue
                server.settimeout(None)
                self._open |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
