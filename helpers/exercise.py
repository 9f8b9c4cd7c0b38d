"""The exercise's order, and the values Barbican accepts for one.

Plain values, no imports: the command line reads them before it loads
anything that talks to Barbican.
"""

DEFAULT_NAME = "Order for an AES key"
DEFAULT_ALGORITHM = "aes"
DEFAULT_BIT_LENGTH = 256
DEFAULT_MODE = "cbc"
PAYLOAD_CONTENT_TYPE = "application/octet-stream"

PENDING, ACTIVE, ERROR = "PENDING", "ACTIVE", "ERROR"

# What Barbican's default crypto plugin (simple_crypto) can generate for a
# key order.  The notebook's form offers these; the helpers still send any
# value to Barbican, so a learner can see what Barbican says about others.
# (XTS is left out: it needs twice the bit length, which would make the
# offered lengths depend on the mode.)
# (3DES is left out too: simple_crypto has no generator for it, and the
# order would end in ERROR.)
KEY_BIT_LENGTHS = {"aes": (128, 192, 256), "hmacsha256": (128, 192, 256)}
KEY_ALGORITHMS = tuple(KEY_BIT_LENGTHS)
KEY_MODES = ("cbc", "ctr", "gcm")
