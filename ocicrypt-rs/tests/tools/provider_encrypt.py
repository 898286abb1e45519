#!/usr/bin/env python3
"""Encrypt every layer of an OCI image layout for a CoCo key provider, without ocicrypt-rs.

The keyprovider interop test (ocicrypt-rs/tests/keyprovider.rs) decrypts what this script
writes, so the script is written from the formats alone and shares no code with the crate:

* layer cipher `AES_256_CTR_HMAC_SHA256` (containers/ocicrypt): a random 32-byte key and
  16-byte initial counter block; the blob is AES-256-CTR of the layer bytes, authenticated
  by HMAC-SHA256 over the encrypted blob, keyed with the same 32-byte key;
* public options, annotation `org.opencontainers.image.enc.pubopts`:
  base64(JSON {"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": b64, "cipheroptions": {}});
* private options (what the key wrapper protects):
  JSON {"symkey": b64, "digest": "sha256:<plain blob digest>", "cipheroptions": {"nonce": b64}};
* CoCo annotation packet, annotation
  `org.opencontainers.image.enc.keys.provider.attestation-agent` = base64(JSON packet) with
  the private options sealed by AES-256-GCM (12-byte IV, 16-byte tag appended) under the
  key-encryption key (KEK) that a KBS serves at `kid`:
    v1: {"kid", "wrapped_data": b64, "iv": b64, "wrap_type": "A256GCM"}
    v2: v1 plus {"version": "0.1.0", "provider": "kbs"}
* the layer media type gets the `+encrypted` suffix (a plain tar stays uncompressed here).

usage: provider_encrypt.py SRC_LAYOUT DST_LAYOUT KEK_FILE KID [v1|v2]
  KEK_FILE holds exactly 32 raw bytes. DST_LAYOUT is replaced. Prints the new manifest
  digest of each image. Needs python3 `cryptography`. Every layer is decrypted again before
  the layout is written, so a broken output never reaches the test.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PROVIDER_ANNOTATION = "org.opencontainers.image.enc.keys.provider.attestation-agent"
PUBOPTS_ANNOTATION = "org.opencontainers.image.enc.pubopts"
LAYER_CIPHER = "AES_256_CTR_HMAC_SHA256"
IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ENCRYPTABLE = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)


def fail(message):
    sys.stderr.write(f"provider_encrypt.py: {message}\n")
    sys.exit(2)


def enc64(data):
    return base64.b64encode(data).decode("ascii")


def dec64(text):
    return base64.b64decode(text, validate=True)


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout directory: content-addressed blobs plus index.json."""

    def __init__(self, root):
        self.root = root

    def blob_path(self, digest):
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256" or len(hexpart) != 64:
            fail(f"unsupported digest {digest!r}")
        return os.path.join(self.root, "blobs", "sha256", hexpart)

    def read_blob(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            data = f.read()
        if sha256_digest(data) != digest:
            fail(f"blob {digest} does not match its digest")
        return data

    def write_blob(self, data):
        digest = sha256_digest(data)
        with open(self.blob_path(digest), "wb") as f:
            f.write(data)
        return digest

    def read_json(self, name):
        with open(os.path.join(self.root, name), "rb") as f:
            return json.load(f)


def ctr(key, counter_block, data):
    transform = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()
    return transform.update(data) + transform.finalize()


def seal_packet(kek, kid, private_options, version):
    iv = secrets.token_bytes(12)
    packet = {
        "kid": kid,
        "wrapped_data": enc64(AESGCM(kek).encrypt(iv, private_options, None)),
        "iv": enc64(iv),
        "wrap_type": "A256GCM",
    }
    if version == "v2":
        packet["version"] = "0.1.0"
        packet["provider"] = "kbs"
    return json.dumps(packet, separators=(",", ":")).encode()


def encrypt_layer(kek, kid, version, plain):
    """Returns (encrypted blob, annotations) for one plain layer blob."""
    layer_key = secrets.token_bytes(32)
    counter_block = secrets.token_bytes(16)
    blob = ctr(layer_key, counter_block, plain)
    tag = hmac.new(layer_key, blob, hashlib.sha256).digest()
    private_options = json.dumps(
        {
            "symkey": enc64(layer_key),
            "digest": sha256_digest(plain),
            "cipheroptions": {"nonce": enc64(counter_block)},
        }
    ).encode()
    public_options = json.dumps(
        {"cipher": LAYER_CIPHER, "hmac": enc64(tag), "cipheroptions": {}}
    ).encode()
    annotations = {
        PROVIDER_ANNOTATION: enc64(seal_packet(kek, kid, private_options, version)),
        PUBOPTS_ANNOTATION: enc64(public_options),
    }
    return blob, annotations


def decrypt_layer(kek, blob, annotations):
    """The reverse of encrypt_layer, from the annotations alone: the self-check."""
    packet = json.loads(dec64(annotations[PROVIDER_ANNOTATION]))
    private = json.loads(
        AESGCM(kek).decrypt(dec64(packet["iv"]), dec64(packet["wrapped_data"]), None)
    )
    public = json.loads(dec64(annotations[PUBOPTS_ANNOTATION]))
    if public["cipher"] != LAYER_CIPHER:
        fail("self-check: wrong cipher")
    layer_key = dec64(private["symkey"])
    expected = hmac.new(layer_key, blob, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, dec64(public["hmac"])):
        fail("self-check: HMAC mismatch")
    plain = ctr(layer_key, dec64(private["cipheroptions"]["nonce"]), blob)
    if sha256_digest(plain) != private["digest"]:
        fail("self-check: decrypted layer does not match the recorded digest")
    return plain


def encrypt_manifest(src, dst, kek, kid, version, manifest):
    config = manifest["config"]
    dst.write_blob(src.read_blob(config["digest"]))
    new_layers = []
    for layer in manifest["layers"]:
        media_type = layer["mediaType"]
        plain = src.read_blob(layer["digest"])
        if media_type not in ENCRYPTABLE:
            dst.write_blob(plain)
            new_layers.append(layer)
            continue
        blob, added = encrypt_layer(kek, kid, version, plain)
        if decrypt_layer(kek, blob, added) != plain:
            fail("self-check: round trip changed the layer")
        annotations = dict(layer.get("annotations") or {})
        annotations.update(added)
        new_layer = dict(layer)
        new_layer.update(
            mediaType=media_type + "+encrypted",
            digest=dst.write_blob(blob),
            size=len(blob),
            annotations=annotations,
        )
        new_layers.append(new_layer)
    encrypted = dict(manifest, layers=new_layers)
    return json.dumps(encrypted, separators=(",", ":")).encode()


def main(argv):
    if len(argv) not in (5, 6):
        fail("usage: provider_encrypt.py SRC_LAYOUT DST_LAYOUT KEK_FILE KID [v1|v2]")
    src_dir, dst_dir, kek_file, kid = argv[1:5]
    version = argv[5] if len(argv) == 6 else "v1"
    if version not in ("v1", "v2"):
        fail(f"packet version must be v1 or v2, not {version!r}")
    if not kid:
        fail("KID must not be empty")
    with open(kek_file, "rb") as f:
        kek = f.read()
    if len(kek) != 32:
        fail(f"the KEK in {kek_file} has {len(kek)} bytes; 32 are needed")

    src = Layout(src_dir)
    index = src.read_json("index.json")
    shutil.rmtree(dst_dir, ignore_errors=True)
    os.makedirs(os.path.join(dst_dir, "blobs", "sha256"))
    dst = Layout(dst_dir)
    shutil.copyfile(
        os.path.join(src_dir, "oci-layout"), os.path.join(dst_dir, "oci-layout")
    )

    descriptors = []
    for desc in index["manifests"]:
        if desc.get("mediaType") != IMAGE_MANIFEST:
            fail(f"only image manifests are handled, not {desc.get('mediaType')!r}")
        manifest = json.loads(src.read_blob(desc["digest"]))
        data = encrypt_manifest(src, dst, kek, kid, version, manifest)
        new_desc = dict(desc, digest=dst.write_blob(data), size=len(data))
        descriptors.append(new_desc)
        print(new_desc["digest"])

    with open(os.path.join(dst_dir, "index.json"), "w") as f:
        json.dump(dict(index, manifests=descriptors), f)


if __name__ == "__main__":
    main(sys.argv)
