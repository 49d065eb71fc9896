//! Proof that a call was sent on by another node of the same hub (a cluster's node sends a
//! call to a scene that runs elsewhere on to that scene's node, `citybrain_server`'s
//! `scene::forward`). The sending node has already admitted the call against the caller's
//! rate; the node that serves it skips its own count only when the call carries this proof,
//! because the header naming the sender alone is the caller's to forge.
//!
//! Key decision: an HMAC under a key derived from the hub secret, which every node of a hub
//! holds (`Gov::open_with` refuses a node with another), over the sender, the time, the
//! method, the path and the caller's `Authorization`; good for [`WINDOW_SECS`] either side
//! of the receiver's clock. No state is kept, so a proof seen on the wire between nodes can
//! be sent again within the window, for the same caller and path: it then skips the rate
//! count only, never authentication, grants or the audit trail.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far the sender's clock and the receiver's may be apart, in seconds.
pub const WINDOW_SECS: i64 = 30;

/// The key that signs and checks proofs.
#[derive(Clone)]
pub struct Forwarding {
    key: Vec<u8>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forwarding(..)")
    }
}

/// What a proof is about: one call as the sending node sends it.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The sending node's id.
    pub node: &'a str,
    pub method: &'a str,
    /// The path and query; a leading `/api/v1` is not part of what is signed, so the two
    /// ends agree whether or not their routers have stripped it.
    pub path: &'a str,
    /// The caller's `Authorization` header as sent.
    pub authorization: &'a [u8],
}

impl Forwarding {
    /// `key`: derived from the hub secret for this purpose only.
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// The proofs of the hub whose secret is `secret` (`crate::load_secret`).
    pub fn of_secret(secret: &[u8]) -> Self {
        Self::new(crate::derive_key(secret, "citybrain forwarding v1"))
    }

    fn mac(&self, call: &Forwarded<'_>, at: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        let path = call.path.strip_prefix("/api/v1").unwrap_or(call.path);
        let authorization = Sha256::digest(call.authorization);
        for part in [
            call.node.as_bytes(),
            at.to_string().as_bytes(),
            call.method.as_bytes(),
            path.as_bytes(),
            authorization.as_slice(),
        ] {
            // Lengths first, so no two different calls sign the same bytes.
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }

    /// The proof for `call` sent at `at` (Unix seconds): `AT.HEX`.
    pub fn proof(&self, call: &Forwarded<'_>, at: i64) -> String {
        let tag = self.mac(call, at).finalize().into_bytes();
        format!("{at}.{}", hex::encode(tag))
    }

    /// Whether `proof` was made by a node of this hub for `call`, within the window of
    /// `now` (Unix seconds). Compared in constant time.
    pub fn check(&self, proof: &str, call: &Forwarded<'_>, now: i64) -> bool {
        let Some((at, tag)) = proof.split_once('.') else {
            return false;
        };
        let (Ok(at), Ok(tag)) = (at.parse::<i64>(), hex::decode(tag)) else {
            return false;
        };
        if (now - at).abs() > WINDOW_SECS {
            return false;
        }
        self.mac(call, at).verify_slice(&tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_node_of_the_hub_proves_a_call_it_sent_on_and_only_for_that_call_and_time() {
        let hub = Forwarding::new(b"a key derived from the hub secret".to_vec());
        let call = Forwarded {
            node: "node-a",
            method: "GET",
            path: "/api/v1/indices/traffic/live",
            authorization: b"Bearer cb_secret_token",
        };
        let proof = hub.proof(&call, 1_000);
        assert!(hub.check(&proof, &call, 1_000));
        assert!(hub.check(&proof, &call, 1_000 + WINDOW_SECS));
        assert!(!hub.check(&proof, &call, 1_000 + WINDOW_SECS + 1), "stale");
        assert!(
            !hub.check(&proof, &call, 1_000 - WINDOW_SECS - 1),
            "from the future"
        );
        // The receiver may see the path without its /api/v1.
        let stripped = Forwarded {
            path: "/indices/traffic/live",
            ..call
        };
        assert!(hub.check(&proof, &stripped, 1_000));
        // Anything else about the call, and the proof is no proof.
        for other in [
            Forwarded {
                node: "node-b",
                ..call
            },
            Forwarded {
                method: "POST",
                ..call
            },
            Forwarded {
                path: "/api/v1/alerts",
                ..call
            },
            Forwarded {
                authorization: b"Bearer another_callers_token",
                ..call
            },
        ] {
            assert!(!hub.check(&proof, &other, 1_000), "{other:?}");
        }
        // Another hub's key, a changed time, garbage.
        let other_hub = Forwarding::new(b"another hub".to_vec());
        assert!(!other_hub.check(&proof, &call, 1_000));
        let (_, tag) = proof.split_once('.').unwrap();
        assert!(!hub.check(&format!("1001.{tag}"), &call, 1_000));
        for junk in [
            "",
            ".",
            "1000",
            "1000.",
            "x.00",
            "1000.zz",
            &proof[..proof.len() - 2],
        ] {
            assert!(!hub.check(junk, &call, 1_000), "{junk:?}");
        }
    }
}
