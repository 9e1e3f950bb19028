"""Field encryption against what a developer would pick instead: raw AES-GCM, Tink, the
AWS Encryption SDK, and tenancy's ``TenantKeys`` (and its envelope alone).

What it measures: microseconds per encrypt+decrypt round trip of a 256 B, 4 KiB and
64 KiB value with a warm key, in one process, five ways on the same plaintext:

- **raw AESGCM** (the limit): ``cryptography``'s ``AESGCM(key).encrypt`` then
  ``.decrypt`` with a fresh 12-byte ``os.urandom`` nonce and associated data of the same
  size as tenancy binds (the binding plus the 49-byte header); no framing, no key
  commitment, no key management;
- **Tink AEAD**: ``tink.aead`` with the ``AES256_GCM`` key template, an in-memory keyset,
  the same associated data (Tink adds its 5-byte key-id prefix and the nonce);
- **AWS Encryption SDK**: ``EncryptionSDKClient.encrypt``/``decrypt`` with a raw AES
  wrapping key (``RawMasterKey``, no KMS: the SDK's raw AES keyring), the key-committing
  suite without signatures (``AES_256_GCM_HKDF_SHA512_COMMIT_KEY``) and an encryption
  context naming the same tenant, table, column and row; it wraps a fresh data key per
  message, so it gets fewer calls per batch (the calibration sizes every batch to time);
- **tenancy**: ``TenantKeys.encrypt``/``decrypt`` with a warm data-key cache
  (``DataKeyCache(ttl=3600)``), a tenant context bound as in a request, a SQLite store
  (WAL, as ``tenancy.deployment`` opens SQLite) and the local key provider: every check
  runs (tenant binding, key-state generation, wear by age and message count with its
  store write every 1,024 encrypts, the key commitment on decrypt, a random 96-bit nonce
  per message);
- **tenancy envelope (hazmat)**: ``tenancy.keys.hazmat`` ``seal`` then ``open_`` with a
  ``DataKey`` in hand: the ciphertext format alone (header, commitment, binding).

Each size is one table (``peerbench``: batches interleaved, order turning per round,
medians): µs per round trip, ratio to the limit, and each tenancy row against the best
peer. Targets (issue 19): at 4 KiB ``tenancy`` at least 0.5x raw (aiming at Tink's 0.7x);
at 64 KiB at least as fast as Tink. Every round trip is checked once before timing.
Pinned to one CPU. A script, not a test: nothing asserts.

    .venv/bin/python bench/peers/keys.py [--rounds 15] [--seconds 0.2] [--json PATH]
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peerbench

SIZES = ((256, "256 B"), (4096, "4 KiB"), (65536, "64 KiB"))
LIMIT = "raw AESGCM"
TINK = "Tink AEAD"
AWS = "AWS Encryption SDK"
OURS = "tenancy"
ENVELOPE = "tenancy envelope (hazmat)"
PURPOSE = "worklogs.comment"
TABLE, COLUMN = "worklogs", "comment"
TARGET_4K_VS_LIMIT = 0.5
AIM_4K_VS_LIMIT = 0.7


def tink_aead() -> Any:
    import tink
    from tink import aead

    aead.register()
    handle = tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)
    return handle.primitive(aead.Aead)


def aws_sdk(binding_fields: dict[str, str]) -> Callable[[bytes], bytes]:
    """An encrypt+decrypt round trip through the AWS Encryption SDK with a raw AES key."""
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import (
        Algorithm,
        CommitmentPolicy,
        EncryptionKeyType,
        WrappingAlgorithm,
    )
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

    wrapping_key = WrappingKey(
        wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
        wrapping_key=os.urandom(32),
        wrapping_key_type=EncryptionKeyType.SYMMETRIC,
    )

    class StaticRawKeys(RawMasterKeyProvider):  # type: ignore[misc]
        provider_id = "bench"

        def _get_raw_key(self, key_id: bytes) -> WrappingKey:
            return wrapping_key

    provider = StaticRawKeys()
    provider.add_master_key(b"tenant-kek")
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    suite = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY

    def round_trip(plaintext: bytes) -> bytes:
        sealed, _ = client.encrypt(
            source=plaintext,
            key_provider=provider,
            encryption_context=binding_fields,
            algorithm=suite,
        )
        opened, header = client.decrypt(source=sealed, key_provider=provider)
        if header.encryption_context.get("row") != binding_fields["row"]:
            raise RuntimeError("encryption context lost")
        return bytes(opened)

    return round_trip


def setup(tmp: Path) -> tuple[Any, str, Any]:
    """A ``TenantKeys`` over a SQLite file and the local provider, one tenant provisioned."""
    from sqlalchemy import create_engine, event

    from tenancy.events import MemorySink
    from tenancy.keys import DataKeyCache, LocalKeyProvider, RootKey, TenantKeys

    # SQLite as tenancy.deployment.open_engine configures it (WAL, a busy timeout).
    engine = create_engine(f"sqlite:///{tmp}/keys.db", connect_args={"timeout": 10})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    root = RootKey.load_or_create(tmp / "root.key")
    local = LocalKeyProvider(tmp / "keks.json", root=root)
    keys = TenantKeys(engine, [local], cache=DataKeyCache(ttl=3600.0), events=MemorySink())
    keys.create_schema()
    tenant_id = str(uuid.uuid4())
    keys.provision(tenant_id)
    return keys, tenant_id, engine


def context(tenant_id: str) -> Any:
    from tenancy.context import Principal, TenantContext

    principal = Principal(
        issuer="bench",
        tenant_id=tenant_id,
        subject="alice",
        scopes=frozenset({"worklogs:read", "worklogs:write"}),
    )
    return TenantContext(tenant_id, "acme", "eu-central-1", principal, f"req-{uuid.uuid4().hex}")


def variants(keys: Any, tenant_id: str, size: int) -> dict[str, Callable[[], bytes]]:
    """The five round trips of one plaintext size, each checked once."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tenancy.keys import Binding
    from tenancy.keys.hazmat import HEADER_BYTES, NONCE_BYTES, DataKey, open_, seal

    plaintext = os.urandom(size)
    binding = Binding(tenant_id, TABLE, COLUMN, f"wl-{uuid.uuid4()}")
    aad = binding.aad(bytes(HEADER_BYTES))  # what the envelope authenticates, same size
    aead = AESGCM(os.urandom(32))
    tink = tink_aead()
    dek = DataKey.from_material(os.urandom(32), 1)
    aws = aws_sdk({"tenant": tenant_id, "table": TABLE, "column": COLUMN, "row": binding.row_key})
    urandom = os.urandom
    encrypt, decrypt = keys.encrypt, keys.decrypt

    def raw() -> bytes:
        nonce = urandom(NONCE_BYTES)
        return bytes(aead.decrypt(nonce, aead.encrypt(nonce, plaintext, aad), aad))

    def tink_round_trip() -> bytes:
        return bytes(tink.decrypt(tink.encrypt(plaintext, aad), aad))

    def aws_round_trip() -> bytes:
        return aws(plaintext)

    def tenancy() -> bytes:
        return bytes(
            decrypt(encrypt(plaintext, binding, purpose=PURPOSE), binding, purpose=PURPOSE)
        )

    def envelope() -> bytes:
        return open_(dek, seal(dek, plaintext, binding), binding)

    ops = {
        LIMIT: raw,
        TINK: tink_round_trip,
        AWS: aws_round_trip,
        OURS: tenancy,
        ENVELOPE: envelope,
    }
    for name, fn in ops.items():
        if fn() != plaintext:
            raise RuntimeError(f"{name}: the {size} B round trip does not return the plaintext")
    return ops


def verdicts(results: dict[str, peerbench.Result]) -> list[str]:
    """The issue's targets, from per-round ratios."""
    four = results["4 KiB"].ratio(OURS, LIMIT)
    state = (
        "aim met"
        if four >= AIM_4K_VS_LIMIT
        else ("target met" if four >= TARGET_4K_VS_LIMIT else "target NOT met")
    )
    big = results["64 KiB"].ratio(OURS, TINK)
    return [
        f"4 KiB: tenancy {four:.2f}x raw (target >= {TARGET_4K_VS_LIMIT}x, "
        f"aim {AIM_4K_VS_LIMIT}x): {state}",
        f"64 KiB: tenancy {big:.2f}x Tink's throughput (target >= 1.00x): "
        f"{'met' if big >= 1.0 else 'NOT met'}",
    ]


def main() -> None:
    parser = peerbench.arguments(__doc__.split("\n\n")[0])
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds positive")
    peerbench.pin_to_one_cpu()

    from tenancy.context import bind

    sections: dict[str, dict[str, Any]] = {}
    results: dict[str, peerbench.Result] = {}
    with tempfile.TemporaryDirectory(prefix="tenancy-peers-keys-") as tmp:
        keys, tenant_id, engine = setup(Path(tmp))
        with bind(context(tenant_id)):
            for size, label in SIZES:
                ops = variants(keys, tenant_id, size)
                result = results[label] = peerbench.interleave(
                    ops, rounds=args.rounds, seconds=args.seconds
                )
                sections[label] = peerbench.report(
                    f"{label} encrypt+decrypt round trip, warm key (median of "
                    f"{args.rounds} interleaved batches)",
                    result,
                    limit=LIMIT,
                    ours=[OURS, ENVELOPE],
                    unit="us",
                )
        engine.dispose()
    print()
    for line in verdicts(results):
        print(line)
    print(peerbench.environment())
    peerbench.write_json(args.json, list(sections.values()))


if __name__ == "__main__":
    main()
