//! One key pair in memory: its PKCS#8 bytes, the JWT encoding key and the public JWK.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::{Algorithm, KeyError};

/// A private key ready to sign, with its public half as a JWK.
#[derive(Clone)]
pub struct KeyMaterial {
    pub kid: String,
    pub alg: Algorithm,
    /// PKCS#8 DER of the private key: what the key file holds.
    pub pkcs8: Vec<u8>,
    pub encoding_key: jsonwebtoken::EncodingKey,
    pub public_jwk: Value,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    /// Generates a fresh key pair for `alg` with a random `kid`.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let rng = crate::ids::rng();
        let pkcs8 = match alg {
            Algorithm::ES256 => {
                sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generate)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDSA => sig::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
            Algorithm::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| KeyError::Generate)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().map_err(|_| KeyError::Generate)?;
                der.as_ref().to_vec()
            }
        };
        Self::from_pkcs8(crate::ids::id(), alg, pkcs8)
    }

    /// Rebuilds a key from its PKCS#8 bytes.
    pub fn from_pkcs8(kid: String, alg: Algorithm, pkcs8: Vec<u8>) -> Result<Self, KeyError> {
        let bad = |problem: &str| KeyError::File {
            path: kid.clone(),
            problem: problem.to_owned(),
        };
        let (encoding_key, public_jwk) = match alg {
            Algorithm::ES256 => {
                let pair = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|_| bad("not a P-256 key"))?;
                // Uncompressed point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                if point.len() != 65 {
                    return Err(bad("unexpected P-256 public key length"));
                }
                let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])});
                (jsonwebtoken::EncodingKey::from_ec_der(&pkcs8), jwk)
            }
            Algorithm::EdDSA => {
                let pair = sig::Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| bad("not an Ed25519 key"))?;
                let jwk =
                    json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(pair.public_key().as_ref())});
                (jsonwebtoken::EncodingKey::from_ed_der(&pkcs8), jwk)
            }
            Algorithm::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8).map_err(|_| bad("not an RSA key"))?;
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
                });
                // jsonwebtoken signs RSA from the PKCS#1 structure inside the PKCS#8 wrapper.
                let pkcs1 = pkcs8_inner_key(&pkcs8).ok_or_else(|| bad("malformed PKCS#8"))?;
                (jsonwebtoken::EncodingKey::from_rsa_der(pkcs1), jwk)
            }
        };
        let mut public_jwk = public_jwk;
        if let Some(map) = public_jwk.as_object_mut() {
            map.insert("kid".into(), Value::String(kid.clone()));
            map.insert("alg".into(), Value::String(alg.name().into()));
            map.insert("use".into(), Value::String("sig".into()));
        }
        Ok(KeyMaterial {
            kid,
            alg,
            pkcs8,
            encoding_key,
            public_jwk,
        })
    }

    /// Signs `claims` as a JWT with header `typ` and this key's `kid`.
    pub fn sign<T: serde::Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let mut header = jsonwebtoken::Header::new(self.alg.jwt());
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding_key)?)
    }
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo` (RFC 5208):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, … }`.
fn pkcs8_inner_key(der: &[u8]) -> Option<&[u8]> {
    /// Splits one DER TLV off `input`: (tag, contents, rest).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, body, _) = tlv(der)? else { return None };
    let (0x02, _, body) = tlv(body)? else { return None };
    let (0x30, _, body) = tlv(body)? else { return None };
    let (0x04, key, _) = tlv(body)? else { return None };
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_tokens_its_public_jwk_verifies() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let key = KeyMaterial::generate(alg).unwrap();
            let token = key
                .sign("at+jwt", &json!({"sub": "s", "exp": 4_000_000_000u64}))
                .unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(
                (header.typ.as_deref(), header.kid.as_deref()),
                (Some("at+jwt"), Some(key.kid.as_str()))
            );
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk.clone()).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg.jwt());
            validation.validate_aud = false;
            let claims = jsonwebtoken::decode::<Value>(
                &token,
                &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
                &validation,
            )
            .unwrap();
            assert_eq!(claims.claims["sub"], "s", "{alg:?}");
            // The key survives its file form.
            let again = KeyMaterial::from_pkcs8(key.kid.clone(), alg, key.pkcs8.clone()).unwrap();
            assert_eq!(again.public_jwk, key.public_jwk);
            assert!(!format!("{key:?}").contains("pkcs8"));
        }
    }
}
