"""Ed25519 bundle signatures: `edgesmith keygen`, `run --sign KEY`, `verify --key PUB`.

The signature covers manifest.json's bytes; the manifest lists the sha256 of every other file in the bundle, so
one signature proves the whole bundle is the one that was built with the private key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .config import Frozen
from .errors import EdgesmithError, require

SIGNATURE = "manifest.sig"
MAX_SIGNATURE = 4096  # bytes: sign_folder writes about 200


class SigningKey(Frozen):
    """What the bundle stage's config holds: where the private key lies and its public half (a changed key
    rebuilds the bundle). Never the private key itself: stage configs are written into manifests."""

    path: str
    public_key: str  # hex of the 32 raw public bytes

    @staticmethod
    def of(path: Path | None) -> "SigningKey | None":
        if path is None:
            return None
        return SigningKey(path=str(path.resolve()), public_key=_raw_public(load_private(path).public_key()).hex())


def keygen(prefix: Path) -> tuple[Path, Path]:
    """PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (PEM); refuses to overwrite either."""
    require(not prefix.is_dir(), f"{prefix} is a folder; pass a file prefix such as keys/builder")
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for p in (private_path, public_path):
        require(not p.exists() and not p.is_symlink(), f"{p} already exists; pick another prefix or move it away")
    require(private_path.parent.is_dir(), f"{private_path.parent}: no such folder; create it first")
    key = Ed25519PrivateKey.generate()
    try:
        _write_new(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
        _write_new(public_path, key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    except OSError as err:
        raise EdgesmithError(f"cannot write {err.filename} ({err.strerror}); pick a folder you can write to") from None
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """O_EXCL: never clobber a file created meanwhile; the mode from the start, so a private key is never
    readable by others, even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # TypeError: the key is password-protected
        raise EdgesmithError(f"{path}: not an unencrypted PEM private key; make one with `edgesmith keygen`") from None
    require(isinstance(key, Ed25519PrivateKey), f"{path}: not an ed25519 key; make one with `edgesmith keygen`")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read(path))
    except (ValueError, UnsupportedAlgorithm):
        raise EdgesmithError(f"{path}: not a PEM public key; pass the .pub file from `edgesmith keygen`") from None
    require(isinstance(key, Ed25519PublicKey), f"{path}: not an ed25519 public key; pass the .pub file from `edgesmith keygen`")
    return key


def sign_folder(folder: Path, key: SigningKey) -> None:
    """Write SIGNATURE next to manifest.json, signing its bytes as they are now."""
    private = load_private(Path(key.path))
    raw = _raw_public(private.public_key())
    require(raw.hex() == key.public_key, f"{key.path} changed during the run; run again")
    signature = private.sign((folder / "manifest.json").read_bytes())
    (folder / SIGNATURE).write_text(json.dumps({"algorithm": "ed25519", "key": fingerprint(raw), "signature": signature.hex()}) + "\n")


def check(folder: Path, public_path: Path | None) -> str:
    """One line saying what is known about the signature; raises when --key was given and it does not hold."""
    sig_path = folder / SIGNATURE
    if public_path is None:
        return "signature: signed, not checked (pass --key PUB to prove who built it)" if sig_path.exists() else "signature: unsigned"
    public = load_public(public_path)
    require(sig_path.is_file(), f"unsigned bundle (no {SIGNATURE}), but --key was given; get the signed bundle or drop --key")
    claimed, signature = _read_signature(sig_path)
    mine = fingerprint(_raw_public(public))
    require(claimed == mine, f"signed by key {claimed}, not by {public_path} ({mine}); wrong key or a re-signed bundle")
    try:
        public.verify(signature, (folder / "manifest.json").read_bytes())
    except InvalidSignature:
        raise EdgesmithError("signature does not match manifest.json; the bundle was changed after it was built") from None
    return f"signature: valid, ed25519 key {mine}"


def fingerprint(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def _read_signature(path: Path) -> tuple[str, bytes]:
    """(key fingerprint the signer claims, signature bytes), refused unread when larger than any `sign_folder` writes
    and refused unless shaped as it writes them (the fingerprint is printed in errors)."""
    require(path.stat().st_size <= MAX_SIGNATURE, f"{SIGNATURE} is {path.stat().st_size:,} bytes, and edgesmith writes "
            f"about 200; re-copy the bundle")
    try:
        sig = json.loads(path.read_bytes())
        key, signature = sig["key"], bytes.fromhex(sig["signature"])
        ok = isinstance(key, str) and re.fullmatch("[0-9a-f]{16}", key) is not None and len(signature) == 64
    except (ValueError, KeyError, TypeError, RecursionError):  # ValueError: UnicodeDecodeError, JSONDecodeError; RecursionError: [[[[...
        ok = False
    require(ok, f"{SIGNATURE} is not an ed25519 signature as edgesmith writes one; re-copy the bundle")
    return key, signature


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _read(path: Path) -> bytes:
    require(path.is_file(), f"{path}: no such key file")
    return path.read_bytes()
