#!/usr/bin/env python3
"""Writes python-cryptography-ml-kem-jwe.json beside this script: an ML-KEM-768 private key
(PKCS#8 PEM in seed form, as OpenSSL 3.5+ and Python's cryptography write it), its
encapsulation key, and a KBS resource reply wrapped for it with `ML-KEM-768+A192KW` the
way trustee's kbs/src/jwe/akp.rs does, made by implementations independent of ours:
cryptography (ML-KEM-768, AES key wrap, AES-GCM) and `openssl mac ... KMAC256` (the KDF).

  KEK = KMAC256(K = shared secret, X = be32(len(alg)) || alg || be32(192), L = 192, S = "")
  encrypted_key = AES-192-KW(KEK, CEK); protected = {"alg","enc":"A256GCM","ek":b64url(ct)}
  ciphertext||tag = AES-256-GCM(CEK, iv, plaintext, aad = ASCII(protected))

Needs python3 `cryptography` >= 46 (ML-KEM) and the openssl command (KMAC256, OpenSSL >= 3).
"""
import base64, json, os, struct, subprocess, tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

ALG = "ML-KEM-768+A192KW"
PLAINTEXT = b"python-cryptography vector ML-KEM-768"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def kmac256(key: bytes, data: bytes, size: int) -> bytes:
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        out = subprocess.run(
            ["openssl", "mac", "-macopt", "hexkey:" + key.hex(), "-macopt", f"size:{size}",
             "-in", f.name, "KMAC256"],
            check=True, capture_output=True, text=True).stdout.strip()
    return bytes.fromhex(out)


key = mlkem.MLKEM768PrivateKey.generate()
pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption()).decode()
public = key.public_key().public_bytes_raw()
shared, kem_ciphertext = key.public_key().encapsulate()
fixed_info = struct.pack(">I", len(ALG)) + ALG.encode() + struct.pack(">I", 192)
kek = kmac256(shared, fixed_info, 24)
cek = os.urandom(32)
protected = b64url(json.dumps(
    {"alg": ALG, "enc": "A256GCM", "ek": b64url(kem_ciphertext)}, separators=(",", ":")).encode())
iv = os.urandom(12)
sealed = AESGCM(cek).encrypt(iv, PLAINTEXT, protected.encode())
vector = {
    "pem": pem,
    "pub": b64url(public),
    "kek": kek.hex(),
    "jwe": {
        "protected": protected,
        "encrypted_key": b64url(aes_key_wrap(kek, cek)),
        "iv": b64url(iv),
        "ciphertext": b64url(sealed[:-16]),
        "tag": b64url(sealed[-16:]),
    },
}
# self-check: decapsulation gives the same secret
assert key.decapsulate(kem_ciphertext) == shared
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python-cryptography-ml-kem-jwe.json")
with open(path, "w") as f:
    json.dump(vector, f, indent=1)
    f.write("\n")
print(path)
