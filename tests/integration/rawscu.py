"""A minimal DICOM Upper Layer client for tests: sends raw data set bytes with any command UIDs.

DCMTK's storescu refuses malformed files and always derives the command from the data set; the
receiver must also survive senders that do neither. This client speaks the real protocol over a
real socket (PS3.8 PDUs, PS3.7 C-STORE), with no DICOM parsing beyond the file meta header.
"""
import socket
import struct

UID_VERIFICATION = "1.2.840.10008.1.1"
TS_IMPLICIT = "1.2.840.10008.1.2"
TS_EXPLICIT = "1.2.840.10008.1.2.1"


class Rejected(Exception):
    def __init__(self, result, source, reason):
        super().__init__(f"association rejected: result={result} source={source} reason={reason}")
        self.result, self.source, self.reason = result, source, reason


def _item(t, payload):
    return struct.pack(">BBH", t, 0, len(payload)) + payload


def _pdu(t, payload):
    return struct.pack(">BBI", t, 0, len(payload)) + payload


def _uid(u):
    b = u.encode()
    return b + b"\0" if len(b) % 2 else b


def _elem(tag_elem, value):
    return struct.pack("<HHI", 0, tag_elem, len(value)) + value


def split_file(data):
    """Returns (transfer syntax, data set bytes) of a Part 10 file; raw bytes are implicit LE."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return TS_IMPLICIT, data
    pos, ts = 132, TS_EXPLICIT
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 2:
            break
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = struct.unpack_from("<I", data, pos + 8)[0]
            start = pos + 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            start = pos + 8
        if elem == 0x0010:
            ts = data[start:start + length].rstrip(b"\0 ").decode(errors="replace")
        pos = start + length
    return ts, data[pos:]


class Association:
    def __init__(self, host, port, called, calling, contexts, timeout=30):
        """contexts: list of (abstract syntax, [transfer syntaxes])."""
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepted = {}  # abstract syntax -> (pc id, ts)
        self.msg_id = 0
        items = _item(0x10, b"1.2.840.10008.3.1.1.1")
        for i, (sop, tss) in enumerate(contexts):
            sub = _item(0x30, sop.encode()) + b"".join(_item(0x40, t.encode()) for t in tss)
            items += _item(0x20, struct.pack(">BBBB", 2 * i + 1, 0, 0, 0) + sub)
        items += _item(0x50, _item(0x51, struct.pack(">I", 65536)) + _item(0x52, b"1.2.826.0.1.3680043.9.1"))
        header = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + b"\0" * 32
        self.sock.sendall(_pdu(0x01, header + items))
        t, payload = self._read_pdu()
        if t == 0x03:
            self.sock.close()
            raise Rejected(payload[1], payload[2], payload[3])
        if t != 0x02:
            raise IOError(f"unexpected PDU type {t:#x} in reply to A-ASSOCIATE-RQ")
        pos, by_id = 68, {2 * i + 1: c[0] for i, c in enumerate(contexts)}
        while pos + 4 <= len(payload):
            it, _, ln = struct.unpack_from(">BBH", payload, pos)
            body = payload[pos + 4:pos + 4 + ln]
            if it == 0x21 and body[2] == 0:
                ts = body[8:].decode().rstrip("\0")
                self.accepted[by_id[body[0]]] = (body[0], ts)
            pos += 4 + ln

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("peer closed the connection")
            buf += chunk
        return buf

    def _read_pdu(self):
        t, _, ln = struct.unpack(">BBI", self._recv_exact(6))
        return t, self._recv_exact(ln)

    def _send_pdvs(self, pc, mch, data, chunk=16000):
        for off in range(0, max(len(data), 1), chunk):
            last = off + chunk >= len(data)
            frag = data[off:off + chunk]
            pdv = struct.pack(">I", len(frag) + 2) + bytes([pc, mch | (0x02 if last else 0)]) + frag
            self.sock.sendall(_pdu(0x04, pdv))

    def _read_command(self):
        cmd = b""
        while True:
            t, payload = self._read_pdu()
            if t != 0x04:
                raise ConnectionError(f"PDU type {t:#x} instead of P-DATA (association ended)")
            pos = 0
            while pos < len(payload):
                ln = struct.unpack_from(">I", payload, pos)[0]
                mch = payload[pos + 5]
                cmd += payload[pos + 6:pos + 4 + ln]
                pos += 4 + ln
                if mch & 0x03 == 0x03:
                    return cmd

    @staticmethod
    def _status(cmd):
        pos = 0
        while pos + 8 <= len(cmd):
            _, elem, ln = struct.unpack_from("<HHI", cmd, pos)
            if elem == 0x0900:
                return struct.unpack_from("<H", cmd, pos + 8)[0]
            pos += 8 + ln
        raise ValueError("no status in response")

    def store(self, sop_class, sop_instance, dataset, abstract=None):
        """Sends one C-STORE on the context of `abstract` (default sop_class); returns the status."""
        pc, _ = self.accepted[abstract or sop_class]
        self.msg_id += 1
        body = (_elem(0x0002, _uid(sop_class)) + _elem(0x0100, struct.pack("<H", 1)) +
                _elem(0x0110, struct.pack("<H", self.msg_id)) + _elem(0x0700, struct.pack("<H", 0)) +
                _elem(0x0800, struct.pack("<H", 0)) + _elem(0x1000, _uid(sop_instance)))
        self._send_pdvs(pc, 0x01, _elem(0x0000, struct.pack("<I", len(body))) + body)
        self._send_pdvs(pc, 0x00, dataset)
        return self._status(self._read_command())

    def echo(self):
        pc, _ = self.accepted[UID_VERIFICATION]
        self.msg_id += 1
        body = (_elem(0x0002, _uid(UID_VERIFICATION)) + _elem(0x0100, struct.pack("<H", 0x30)) +
                _elem(0x0110, struct.pack("<H", self.msg_id)) + _elem(0x0800, struct.pack("<H", 0x0101)))
        self._send_pdvs(pc, 0x01, _elem(0x0000, struct.pack("<I", len(body))) + body)
        return self._status(self._read_command())

    def release(self):
        self.sock.sendall(_pdu(0x05, b"\0" * 4))
        t, _ = self._read_pdu()
        self.sock.close()
        return t == 0x06

    def abort(self):
        self.sock.sendall(_pdu(0x07, b"\0" * 4))
        self.sock.close()
