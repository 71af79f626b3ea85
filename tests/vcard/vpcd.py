"""The card side of vsmartcard's vpcd protocol: one TCP connection to the virtual reader.

Every message either way is a 2-byte big-endian length and a payload. From the reader, a
1-byte payload is a control message (0 power off, 1 power on, 2 reset, 4 send the ATR);
anything longer is a command APDU. The card answers the ATR request and every APDU with a
length-prefixed payload, and nothing else. vpcd asks for the ATR on every presence poll,
so a card that stops answering is a card that was pulled out.
"""

from __future__ import annotations

import socket
import time

from tests.vcard.card import OpenPgpCard

VPCD_PORT = 35963  # vpcd's first reader; the second listens on 35964
POWER_OFF, POWER_ON, RESET, GET_ATR = 0, 1, 2, 4


def _quickack(sock: socket.socket) -> None:
    # vpcd writes the length and the APDU separately; without this the card's delayed ACK
    # of the first write stalls every command about 48 ms (TCP_NODELAY alone does not help).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _receive(sock: socket.socket, n: int) -> bytes | None:
    """Exactly ``n`` bytes, or None when vpcd closed the connection."""
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        _quickack(sock)
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """Connect to vpcd, retrying while pcscd is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quickack(sock)
        return sock


def serve(card: OpenPgpCard, sock: socket.socket, pull_at: int | None = None) -> None:
    """Answer vpcd until it closes the connection (pcscd stopped or the reader went away).

    With ``pull_at`` (an instruction byte), the card is pulled out in the middle of the
    first such command: the connection closes before any answer, as a card yanked from
    the reader while it computes (tests of a card removed mid-signature)."""
    while True:
        header = _receive(sock, 2)
        if header is None:
            return
        payload = _receive(sock, int.from_bytes(header, "big"))
        if payload is None:
            return
        if len(payload) == 1:
            if payload[0] == GET_ATR:
                _send(sock, card.atr())
            elif payload[0] in (POWER_OFF, POWER_ON, RESET):
                card.power_cycle()
            continue
        if pull_at is not None and payload[1] == pull_at:
            return
        _send(sock, card.process(payload))
