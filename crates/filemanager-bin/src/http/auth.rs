//! Who is calling, and what they may do.
//!
//! Two kinds of bearer token (the contract's "Auth" section):
//!
//! - **service keys** (`FM_API_KEYS`): full access. Compared in constant time: each configured
//!   key is kept only as an HMAC tag under a random per-process key, and a presented token is
//!   checked with `ring::hmac::verify`, so neither timing nor memory dumps of the tags reveal a
//!   key.
//! - **user tokens**: JWT signed with HS256 under `FM_JWT_SECRET`, `sub` and `exp` required,
//!   optional `domains`. The algorithm is pinned: `none`, `HS384`, `RS256`… are refused before
//!   any signature check. A user owns `{domain}/user/{sub}/` and may read `{domain}/app/`.
//!
//! Presigned URLs are the third way in; they are checked by the library
//! (`FileManager::verify_presigned`) and handled in [`super::presigned`].

use std::collections::HashSet;

use axum::http::{HeaderMap, header};
use filemanager::Scope;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::errors::AppError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A holder of a service key: may do everything.
    Service,
    /// An end user, from a verified JWT.
    User {
        /// The token's `sub`: the user id it owns.
        sub: String,
        /// The token's `domains`, if it restricts them.
        domains: Option<Vec<String>>,
    },
}

/// What a request does to a scope, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Download, head, metadata, list.
    Read,
    /// Upload, delete.
    Write,
    /// Create a presigned URL (of either kind).
    Presign,
}

/// The claims of a user token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Domains the token is limited to; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
}

/// Checks bearer tokens.
pub struct Authenticator {
    tag_key: hmac::Key,
    service_tags: Vec<hmac::Tag>,
    jwt: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("service_keys", &self.service_tags.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

impl Authenticator {
    /// An authenticator for these service keys and (optional) JWT secret.
    pub fn new(service_keys: &[String], jwt_secret: Option<&[u8]>) -> anyhow::Result<Self> {
        install_jwt_crypto();
        let rng = ring::rand::SystemRandom::new();
        let tag_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let service_tags = service_keys
            .iter()
            .filter(|k| !k.is_empty())
            .map(|k| hmac::sign(&tag_key, k.as_bytes()))
            .collect();
        let jwt = match jwt_secret {
            Some(secret) if !secret.is_empty() => {
                let mut v = Validation::new(Algorithm::HS256);
                v.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
                v.validate_exp = true;
                v.validate_nbf = true;
                v.leeway = 5;
                Some((DecodingKey::from_secret(secret)?, v))
            }
            _ => None,
        };
        Ok(Authenticator {
            tag_key,
            service_tags,
            jwt,
        })
    }

    /// The caller behind the `Authorization` header, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AppError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(AppError::Unauthorized(
                "an Authorization: Bearer token is required",
            ))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthorized(
                "the Authorization header must be 'Bearer {token}'",
            ))?;
        if self.is_service_key(token) {
            return Ok(Principal::Service);
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(AppError::Unauthorized("invalid token"));
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            AppError::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                _ => "invalid token",
            })
        })?;
        if data.claims.sub.is_empty() {
            return Err(AppError::Unauthorized("invalid token"));
        }
        Ok(Principal::User {
            sub: data.claims.sub,
            domains: data.claims.domains,
        })
    }

    fn is_service_key(&self, token: &str) -> bool {
        // Check every tag, not stopping at the first match, so the time taken does not tell
        // which key (or how many) matched.
        self.service_tags.iter().fold(false, |found, tag| {
            hmac::verify(&self.tag_key, token.as_bytes(), tag.as_ref()).is_ok() | found
        })
    }
}

/// Whether `principal` may do `action` in `scope`; 403 if not.
pub fn authorize(principal: &Principal, scope: &Scope, action: Action) -> Result<(), AppError> {
    let Principal::User { sub, domains } = principal else {
        return Ok(());
    };
    let domain = scope.domain().as_str();
    if let Some(list) = domains
        && !list.iter().any(|d| d == domain)
    {
        return Err(AppError::forbidden("the token does not cover this domain"));
    }
    match scope.user_id() {
        Some(user) if user.as_str() == sub => Ok(()),
        Some(_) => Err(AppError::forbidden(
            "the token does not cover this user's files",
        )),
        None if action == Action::Read => Ok(()),
        None => Err(AppError::forbidden(
            "user tokens may only read and list APP-level files",
        )),
    }
}

/// Signs a user token; for tests, the CLI and operators who mint tokens by hand.
pub fn sign_user_token(secret: &[u8], claims: &Claims) -> anyhow::Result<String> {
    install_jwt_crypto();
    let key = EncodingKey::from_secret(secret)?;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        claims,
        &key,
    )?)
}

// ----- HS256 on `ring` for jsonwebtoken -------------------------------------------------------
//
// jsonwebtoken (since 10) takes its cryptography from a process-wide provider. Its bundled ones
// pull in either aws-lc (a C build) or RSA/ECDSA/EdDSA crates we never use; HS256 is all we
// accept, and `ring`, which the rest of the workspace already uses, does HMAC in constant time.

static RING_HS256: CryptoProvider = CryptoProvider {
    signer_factory: ring_signer,
    verifier_factory: ring_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the ring-backed HS256 provider, once per process.
fn install_jwt_crypto() {
    // An `Err` means a provider is installed already (ours, from an earlier call).
    let _ = RING_HS256.install_default();
}

struct RingHs256(hmac::Key);

impl Signer<Vec<u8>> for RingHs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl Verifier<Vec<u8>> for RingHs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        hmac::verify(&self.0, msg, sig).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for RingHs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for RingHs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn ring_signer(
    alg: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    match alg {
        Algorithm::HS256 => Ok(Box::new(RingHs256(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.as_bytes(),
        )))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn ring_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    match alg {
        Algorithm::HS256 => Ok(Box::new(RingHs256(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.try_get_as_bytes()?,
        )))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> Authenticator {
        Authenticator::new(
            &["svc-key-1".into(), "svc-key-2".into()],
            Some(b"jwt-secret"),
        )
        .unwrap()
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn service_keys_and_user_tokens() {
        let a = auth();
        assert_eq!(
            a.authenticate(&bearer("svc-key-2")).unwrap(),
            Principal::Service
        );
        assert!(a.authenticate(&bearer("svc-key-3")).is_err());
        assert!(a.authenticate(&HeaderMap::new()).is_err());
        let claims = Claims {
            sub: "42".into(),
            exp: now() + 60,
            domains: None,
        };
        let t = sign_user_token(b"jwt-secret", &claims).unwrap();
        assert!(matches!(
            a.authenticate(&bearer(&t)).unwrap(),
            Principal::User { sub, .. } if sub == "42"
        ));
        let forged = sign_user_token(b"other-secret", &claims).unwrap();
        assert!(a.authenticate(&bearer(&forged)).is_err());
        let expired = Claims {
            exp: now() - 600,
            ..claims
        };
        let t = sign_user_token(b"jwt-secret", &expired).unwrap();
        assert!(a.authenticate(&bearer(&t)).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"sub":"42","exp":9999999999} . (no signature)
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(auth().authenticate(&bearer(t)).is_err());
    }

    #[test]
    fn users_own_their_space_and_read_app() {
        let u = Principal::User {
            sub: "1".into(),
            domains: Some(vec!["blog".into()]),
        };
        let own = Scope::from_url_path("blog/user/1").unwrap();
        let other = Scope::from_url_path("blog/user/10").unwrap();
        let app = Scope::from_url_path("blog/app").unwrap();
        let elsewhere = Scope::from_url_path("shop/user/1").unwrap();
        for action in [Action::Read, Action::Write, Action::Presign] {
            assert!(authorize(&u, &own, action).is_ok());
            assert!(authorize(&u, &other, action).is_err());
            assert!(authorize(&u, &elsewhere, action).is_err());
            assert!(authorize(&Principal::Service, &other, action).is_ok());
        }
        assert!(authorize(&u, &app, Action::Read).is_ok());
        assert!(authorize(&u, &app, Action::Write).is_err());
        assert!(authorize(&u, &app, Action::Presign).is_err());
    }
}
