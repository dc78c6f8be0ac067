//! Better Auth's random strings: row ids and session tokens are 32 characters of
//! `[a-zA-Z0-9]`, drawn from the operating system's generator by rejection sampling (a
//! byte below 248 = 4 × 62 picks `ALPHABET[byte % 62]`), so every character is equally
//! likely.

const ALPHABET: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Fills `bytes` from the operating system's generator. Without one the service cannot
/// issue secrets at all, so it stops rather than issue guessable ones.
pub fn fill_random(bytes: &mut [u8]) {
    if let Err(error) = getrandom::getrandom(bytes) {
        tracing::error!(%error, "the operating system's random generator failed");
        std::process::abort();
    }
}

/// A random string of `length` characters of `[a-zA-Z0-9]`.
pub fn generate(length: usize) -> String {
    let mut out = String::with_capacity(length);
    let mut pool = [0u8; 64];
    while out.len() < length {
        fill_random(&mut pool);
        for byte in pool {
            if byte < 248 && out.len() < length {
                out.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    out
}

/// A row id or session token: 32 characters.
pub fn generate_id() -> String {
    generate(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_better_auths_shape_and_differ() {
        let a = generate_id();
        let b = generate_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
