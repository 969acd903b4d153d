"""A job whose output is a NumPy array, written without NumPy (the job image has none), and
results of it: the arbiter's own (EXACT), one from other hardware within the manifest's
tolerance (WITHIN), one beyond it (BEYOND)."""

from computenet.merkle import MerkleTree

# Writes a float64 .npy without NumPy (the job image has none): the same bytes in the container and here.
NPY = (
    "import struct\n"
    "def npy(values):\n"
    "    header = \"{'descr': '<f8', 'fortran_order': False, 'shape': (%d,), }\" % len(values)\n"
    "    header += ' ' * ((64 - (10 + len(header) + 1) % 64) % 64) + '\\n'\n"
    "    return b'\\x93NUMPY\\x01\\x00' + struct.pack('<H', len(header)) + header.encode() + "
    "struct.pack('<%dd' % len(values), *values)\n"
)
VALUES = [0.125, -1.5, 3.0, 42.0]
COMMAND = [
    "python3",
    "-c",
    NPY + f"open('/out/logits.npy', 'wb').write(npy({VALUES!r})); "
    "open('/out/labels.txt', 'w').write('cat\\n'); print('done')",
]
NUMERIC = {"compare": "numeric", "numeric": [{"path": "logits.npy", "rtol": "0.001", "atol": "0"}]}

_ns: dict = {}
exec(NPY, _ns)
npy = _ns["npy"]


def result(values, log=b"done\n", labels=b"cat\n"):
    return {"out/logits.npy": npy(values), "out/labels.txt": labels, "log/container.log": log}


EXACT = result(VALUES)  # what the job writes, and so what the arbiter's run commits
WITHIN = result([v * (1 + 2e-4) for v in VALUES], log=b"done in 0.3 s\n")  # another GPU: close, other bytes
BEYOND = result([v * 1.01 for v in VALUES])


def root_of(files):
    return MerkleTree.from_files(files).root
